// kwx process entry: config → HTTP server (/health 503) → database (embedded or given) →
// migrations → [demo seed] → ledger (rebuilt from PostgreSQL) → engine runtime (zones recovered
// from snapshot + journal) → ingest → gateway (WebSocket, admin) → /health 200.
// SIGINT/SIGTERM shut down in reverse order.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig, type Config } from '../schema/config.js';
import { connect, redactUrl, startEmbeddedPostgres, type EmbeddedPostgres, type Sql } from '../schema/db.js';
import { createLogger, type Logger } from '../schema/log.js';
import { migrate } from '../schema/migrate.js';
import { PROJECT_ROOT } from '../schema/paths.js';
import { seedDemo, type DemoSeed } from '../schema/seed.js';
import { startRuntime, type Runtime } from '../engine/runtime/runtime.js';
import { createIngestService, registerIngestRoutes, type IngestService } from '../ingest/index.js';
import { LedgerStore, loadLedger } from '../ledger/index.js';
import { createApiKey } from './auth.js';
import { attachGateway, type Gateway } from './index.js';
import { createMetricsRegistry } from './metrics.js';
import { startHttpServer, type HttpServer } from './server.js';
import { UwsUnavailableError } from './uws.js';

const VERSION = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const KNOWN_FLAGS = new Set(['--seed-demo', '--exit-after-seed', '--exit', '--bootstrap-admin']);

interface Running {
  server?: HttpServer;
  sql?: Sql;
  embedded?: EmbeddedPostgres;
  ledgerStore?: LedgerStore;
  runtime?: Runtime;
  ingest?: IngestService;
  ingestSql?: Sql;
  gateway?: Gateway;
}

/** How often the ledger's single writer persists its changes (it also flushes on shutdown). */
const LEDGER_FLUSH_INTERVAL_MS = 5;
/** What --seed-demo deposits for the demo prosumer and consumer: 1,000.00 EUR each. */
const DEMO_DEPOSIT_MINOR = 100_000n;

async function start(config: Config, log: Logger, args: Set<string>, running: Running): Promise<void> {
  const metrics = createMetricsRegistry();
  running.server = await startHttpServer({ host: config.host, port: config.port, metrics, version: VERSION });
  log.info('listening', { host: config.host, port: running.server.port });

  let url = config.database_url;
  if (url === null) {
    running.embedded = await startEmbeddedPostgres({ dir: config.data_dir, port: config.embedded_pg_port, log });
    url = running.embedded.url;
    log.info('embedded postgres started', { data_dir: running.embedded.data_dir, port: config.embedded_pg_port });
  }
  running.sql = connect(url, { max: 10 });
  const result = await migrate(running.sql);
  log.info('migrations', { database: redactUrl(url), applied: result.applied, already_applied: result.skipped.length });

  let demo: DemoSeed | null = null;
  if (config.seed_demo || args.has('--seed-demo')) {
    const seed = (demo = await seedDemo(running.sql));
    log.info('demo seeded', { zone_id: seed.zone_id, intervals: seed.interval_ids.length });
    await printNewKeys(running.sql, seed.users);
  }
  const adminEmail = argValue('--bootstrap-admin');
  if (adminEmail !== undefined) {
    const [u] = await running.sql<{ id: string }[]>`
      insert into users (email, name, role) values (${adminEmail}, ${adminEmail}, 'ADMIN')
      on conflict (lower(email)) do update set role = 'ADMIN', is_active = true
      returning id`;
    const key = await createApiKey(running.sql, { user_id: Number(u.id), algorithm: 'HMAC_SHA256', label: 'bootstrap' });
    process.stdout.write(JSON.stringify({ user_id: Number(u.id), email: adminEmail, role: 'ADMIN', ...key }) + '\n');
    log.warn('admin API key created; its secret was printed once on stdout', { user_id: Number(u.id), key_id: key.key_id });
  }
  const ledger = await loadLedger(running.sql);
  running.ledgerStore = new LedgerStore(running.sql, ledger);
  running.ledgerStore.start(LEDGER_FLUSH_INTERVAL_MS);
  if (demo !== null) {
    // Demo money so the demo users can trade at once; the transfer ids make this idempotent.
    const now = Date.now();
    for (const user_id of [demo.users.prosumer, demo.users.consumer]) {
      ledger.openUserAccounts(user_id, 'EUR', now);
      ledger.deposit({ transfer_id: `demo-deposit-${user_id}`, user_id, currency: 'EUR', amount_minor: DEMO_DEPOSIT_MINOR }, now);
    }
    await running.ledgerStore.flush();
  }
  if (args.has('--exit-after-seed') || args.has('--exit')) {
    running.server.setHealth('ok', { database: config.database_url === null ? 'embedded' : 'external' });
    return;
  }

  running.runtime = await startRuntime({
    database_url: url,
    workers: config.engine_workers,
    journal_batch_max: config.journal_batch_max,
    journal_batch_wait_ms: config.journal_batch_wait_ms,
    // the delivery-interval calendar: every zone keeps its intervals written ahead (schedule.ts)
    schedule_intervals_ahead_ms: config.intervals_ahead_hours > 0 ? config.intervals_ahead_hours * 3_600_000 : undefined,
    log,
    onIntervalClosed: (c) => log.info('interval closed; ready for delivery verification', { ...c }),
  });
  log.info('engine runtime ready', { zones: running.runtime.status().zones.length });

  running.ingestSql = connect(url, { max: 8, application: 'kwx-ingest' });
  running.ingest = await createIngestService({ sql: running.ingestSql, log, metrics });
  registerIngestRoutes(running.server.app, { service: running.ingest, log });

  running.gateway = await attachGateway({
    app: running.server.app, sql: running.sql, metrics, log, config, runtime: running.runtime, ledger, ledgerStore: running.ledgerStore,
  });

  running.server.setHealth('ok', { database: config.database_url === null ? 'embedded' : 'external' });
  log.info('ready', { version: VERSION });
}

function argValue(name: string): string | undefined {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : undefined;
}

/** Gives each demo user without a key one HMAC key, printed once on stdout (secrets are stored hashed). */
async function printNewKeys(sql: Sql, users: Record<string, number>): Promise<void> {
  for (const [who, user_id] of Object.entries(users)) {
    const [has] = await sql<{ n: string }[]>`select count(*)::text as n from api_keys where user_id = ${user_id} and revoked_at is null`;
    if (has.n !== '0') continue;
    const key = await createApiKey(sql, { user_id, algorithm: 'HMAC_SHA256', label: `demo ${who}` });
    process.stdout.write(JSON.stringify({ demo_user: who, user_id, ...key }) + '\n');
  }
}

async function stop(running: Running, log: Logger): Promise<void> {
  running.server?.setHealth('stopping');
  const step = async (what: string, fn: () => Promise<unknown> | undefined): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      log.error(`${what} did not stop cleanly`, { error: (err as Error).message });
    }
  };
  await step('gateway', () => running.gateway?.close());
  running.server?.close();
  await step('ingest', () => running.ingest?.close());
  await step('engine runtime', () => running.runtime?.stop());
  if (running.ledgerStore !== undefined) {
    running.ledgerStore.stop();
    await step('ledger', () => running.ledgerStore?.flush());
  }
  await running.ingestSql?.end({ timeout: 5 }).catch(() => {});
  await running.sql?.end({ timeout: 5 }).catch(() => {});
  if (running.embedded !== undefined) {
    await running.embedded.stop().catch((err: Error) => log.error('embedded postgres did not stop cleanly', { error: err.message }));
  }
}

async function main(): Promise<void> {
  const args = new Set(process.argv.slice(2));
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kwx: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.log_level, 'kwx');
  const running: Running = {};
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    stop(running, log).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));

  const argv = process.argv.slice(2);
  const unknown = argv.filter((a, i) => a.startsWith('--') && !KNOWN_FLAGS.has(a) && argv[i - 1] !== '--bootstrap-admin');
  if (unknown.length > 0) {
    process.stderr.write(`kwx: unknown option ${unknown[0]}; known: ${[...KNOWN_FLAGS].join(', ')}\n`);
    process.exit(2);
  }
  if (args.has('--bootstrap-admin') && !/^[^@\s]+@[^@\s]+$/.test(argValue('--bootstrap-admin') ?? '')) {
    process.stderr.write('kwx: --bootstrap-admin needs an email address, e.g. --bootstrap-admin ops@example.com\n');
    process.exit(2);
  }
  try {
    await start(config, log, args, running);
  } catch (err) {
    const e = err as Error & { code?: string };
    const message = err instanceof UwsUnavailableError ? e.message : `start-up failed: ${e.message}`;
    process.stderr.write(`kwx: ${message}\n`);
    log.error('start-up failed', { code: e.code, error: e.message });
    await stop(running, log);
    process.exit(1);
  }
  if (args.has('--exit-after-seed') || args.has('--exit')) shutdown('--exit');
}

await main();
