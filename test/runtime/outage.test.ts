// PostgreSQL cut off under load: new commands get EXCHANGE_UNAVAILABLE, nothing acknowledged is
// lost, nothing refused was executed, and the runtime resumes by itself when the database returns.
// The outage is a cut TCP proxy between kwx and the shared server (the server keeps running).
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startRuntime, type Runtime } from '../../engine/runtime/runtime.js';
import { recoverZone } from '../../engine/runtime/recovery.js';
import type { SubmitAck, SubmitResult } from '../../engine/runtime/types.js';
import { rng, seedMarket, type Market } from './fixtures.js';
import { startProxy, type CuttableProxy } from '../support/proxy.js';
import { expectAckedInJournal, orderFlow, readJournal, type JournalView } from './verify.js';

let db: TestDatabase;
let market: Market;
let proxy: CuttableProxy;
let rt: Runtime | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  market = await seedMarket(db.sql, { zones: 1, users: 5 });
  proxy = await startProxy(db.url);
});
afterAll(async () => {
  const t = (m: string): void => void (process.env.KWX_TEST_DEBUG && console.error(`outage afterAll: ${m} ${new Date().toISOString()}`));
  t('restore');
  await proxy?.restore();
  t('stop');
  await rt?.stop();
  t('close');
  await proxy?.close();
  t('drop');
  await db?.drop();
  t('done');
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('with PostgreSQL cut off, commands get EXCHANGE_UNAVAILABLE, no acknowledged data is lost, and kwx resumes when it returns', async () => {
  const runtime = await startRuntime({
    database_url: proxy.url,
    workers: 1,
    slow_commit_ms: 200,
    commit_timeout_ms: 800,
    backlog_max_rows: 2000,
    clock_tick_ms: 50,
  });
  rt = runtime;
  const zone = market.zone_ids[0];
  for (let i = 0; i < 100 && !(await runtime.dump(zone)).state.intervals.length; i++) await sleep(50);

  const flow = orderFlow(market, rng(7));
  const results: { phase: 'before' | 'outage' | 'after'; coid: string | null; r: SubmitResult }[] = [];
  let phase: 'before' | 'outage' | 'after' = 'before';
  let running = true;
  const inflight = new Set<Promise<void>>();
  // Open loop: a steady stream of commands whether or not earlier ones have been answered.
  const load = (async () => {
    while (running) {
      for (let i = 0; i < 16 && inflight.size < 5000; i++) {
        const { zone_id, cmd } = flow.next();
        const at = phase;
        const p: Promise<void> = runtime.submit(zone_id, cmd).then((r) => {
          results.push({ phase: at, coid: cmd.type === 'PLACE' ? cmd.client_order_id : null, r });
          if (r.ok) flow.observe(r);
          inflight.delete(p);
        });
        inflight.add(p);
      }
      await sleep(2);
    }
  })();

  await sleep(400);
  phase = 'outage';
  await proxy.cut();
  // Wait until the runtime has noticed and refuses commands.
  for (let i = 0; i < 200 && runtime.status().available; i++) await sleep(25);
  expect(runtime.status().available).toBe(false);
  await sleep(500);
  const refusedDuringOutage = results.filter((x) => x.phase === 'outage' && !x.r.ok).length;
  phase = 'after';
  await proxy.restore();
  for (let i = 0; i < 400 && !results.some((x) => x.phase === 'after' && x.r.ok); i++) await sleep(25);
  await sleep(300);
  running = false;
  await load;
  await Promise.all(inflight);

  // Refusals were fast and clear, and only ever EXCHANGE_UNAVAILABLE.
  expect(refusedDuringOutage).toBeGreaterThan(0);
  const errors = results.filter((x) => !x.r.ok).map((x) => (x.r.ok ? '' : x.r.code));
  expect(new Set(errors)).toEqual(new Set(['EXCHANGE_UNAVAILABLE']));
  // kwx resumed by itself.
  expect(results.some((x) => x.phase === 'before' && x.r.ok)).toBe(true);
  expect(results.some((x) => x.phase === 'after' && x.r.ok)).toBe(true);
  expect(runtime.status().available).toBe(true);

  // Every acknowledged command is durable; no refused order was executed.
  const journal: JournalView = await readJournal(db.sql, zone);
  const acked = results.flatMap((x) => (x.r.ok ? [x.r as SubmitAck] : []));
  expectAckedInJournal(new Map([[zone, journal]]), acked);
  const journaledCoids = new Set<string>();
  for (const evs of journal.rows.values()) for (const e of evs ?? []) if (e.type === 'ACCEPTED' || e.type === 'REJECTED') journaledCoids.add(e.client_order_id);
  const refusedPlaces = results.filter((x) => !x.r.ok && x.coid !== null).map((x) => x.coid!);
  expect(refusedPlaces.length).toBeGreaterThan(0);
  expect(refusedPlaces.filter((c) => journaledCoids.has(c))).toEqual([]);
  // The live engine equals a clean replay of the journal (no half-written batch, none twice).
  const live = await runtime.dump(zone);
  const clean = await recoverZone(db.url, zone, { from_scratch: true, verify_events: true });
  expect(live.state_hash).toBe(clean.state_hash);
});
