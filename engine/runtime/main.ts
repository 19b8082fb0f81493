// A standalone runtime process: `node dist/engine/runtime/main.js` with DATABASE_URL set.
// Until the gateway (next issue) fronts the runtime, it is driven over the Node IPC channel
// (child_process.fork with serialization 'advanced'); the crash test uses exactly this.
//   parent → child  { id, t: 'submit', zone_id, cmd }   → { id, result: SubmitResult }
//                   { id, t: 'dump', zone_id }           → { id, state_hash, state }
//                   { id, t: 'status' }                  → { id, status }
//                   { id, t: 'sync_projections' }        → { id }
//                   { id, t: 'stop' }                    → { id } and exit 0
//   child → parent  { t: 'ready', status } once every zone is recovered.
// Settings: DATABASE_URL, KWX_ENGINE_WORKERS, KWX_JOURNAL_BATCH_MAX, KWX_JOURNAL_BATCH_WAIT_MS,
// LOG_LEVEL (schema/config.ts), KWX_SNAPSHOT_EVERY (commands between snapshots per zone) and
// KWX_LIFECYCLE=0 (no interval clock: tests that need a quiet runtime).
import { loadConfig } from '../../schema/config.js';
import { connect } from '../../schema/db.js';
import { createLogger } from '../../schema/log.js';
import { migrate } from '../../schema/migrate.js';
import { startRuntime } from './runtime.js';
import type { SubmitCommand } from './types.js';

type Request =
  | { id: number; t: 'submit'; zone_id: number; cmd: SubmitCommand }
  | { id: number; t: 'dump'; zone_id: number }
  | { id: number; t: 'status' }
  | { id: number; t: 'sync_projections' }
  | { id: number; t: 'stop' };

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.log_level, 'runtime');
  if (config.database_url === null) throw new Error('DATABASE_URL is required by engine/runtime/main.js');
  const sql = connect(config.database_url, { max: 1 });
  await migrate(sql);
  await sql.end({ timeout: 2 });
  const snapshotEvery = Number(process.env.KWX_SNAPSHOT_EVERY ?? '100000');
  const rt = await startRuntime({
    database_url: config.database_url,
    workers: config.engine_workers,
    journal_batch_max: config.journal_batch_max,
    journal_batch_wait_ms: config.journal_batch_wait_ms,
    lifecycle: process.env.KWX_LIFECYCLE !== '0',
    snapshot_every: Number.isSafeInteger(snapshotEvery) && snapshotEvery > 0 ? snapshotEvery : 100_000,
    log,
    onIntervalClosed: (c) => log.info('interval closed; ready for delivery verification', { ...c }),
  });
  const send = (m: unknown): void => {
    if (process.send !== undefined) process.send(m);
  };
  process.on('message', (m: Request) => {
    switch (m.t) {
      case 'submit':
        void rt.submit(m.zone_id, m.cmd).then((result) => send({ id: m.id, result }));
        break;
      case 'dump':
        void rt.dump(m.zone_id).then((d) => send({ id: m.id, ...d }));
        break;
      case 'status':
        send({ id: m.id, status: rt.status() });
        break;
      case 'sync_projections':
        void rt.syncProjections().then(() => send({ id: m.id }));
        break;
      case 'stop':
        void rt.stop().then(() => {
          send({ id: m.id });
          process.exit(0);
        });
        break;
    }
  });
  process.on('SIGTERM', () => void rt.stop().then(() => process.exit(0)));
  log.info('runtime ready', { zones: rt.status().zones.length });
  send({ t: 'ready', status: rt.status() });
}

main().catch((err: Error) => {
  process.stderr.write(JSON.stringify({ level: 'error', component: 'runtime', msg: 'runtime failed to start', error: err.message }) + '\n');
  process.exit(1);
});
