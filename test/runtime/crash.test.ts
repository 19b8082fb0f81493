// kill -9 at random moments loses nothing that was acknowledged.
// The runtime runs as a child process (compiled JS, `npm run build` first); the test drives
// thousands of orders at it over IPC, SIGKILLs it mid-flow several times, restarts it and checks
// the journal, the rebuilt books, the state hash and the read models.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { recoverZone } from '../../engine/runtime/recovery.js';
import { tradeIdFor } from '../../engine/runtime/ids.js';
import type { SubmitAck } from '../../engine/runtime/types.js';
import { startChild, type Child } from './child.js';
import { rng, seedMarket, type Market } from './fixtures.js';
import { expectAckedInJournal, expectBooksMatchJournal, orderFlow, readJournal, type JournalView } from './verify.js';

let db: TestDatabase;
let market: Market;
const RUNS = 4;
const children: Child[] = [];
const start = async (lifecycle = false): Promise<Child> => {
  const c = await startChild(ENV(lifecycle));
  children.push(c);
  return c;
};
// After the first start the interval clock is off: the intervals are open in the engine state
// and the restarted runtime stays quiet while it is compared with the journal.
const ENV = (lifecycle = false) => ({
  DATABASE_URL: db.url,
  KWX_ENGINE_WORKERS: '2',
  KWX_SNAPSHOT_EVERY: '700',
  KWX_JOURNAL_BATCH_WAIT_MS: '1',
  KWX_LIFECYCLE: lifecycle ? '1' : '0',
});

beforeAll(async () => {
  db = await createTestDatabase();
  market = await seedMarket(db.sql, { zones: 2, users: 6 });
});
afterAll(async () => {
  for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  await db?.drop();
});

/** Sends orders with up to `window` in flight until the child dies; returns what was acknowledged. */
async function driveUntilKilled(child: Child, seed: number, kill_after_ms: number): Promise<{ acked: SubmitAck[]; sent: number }> {
  const random = rng(seed);
  const flow = orderFlow(market, random);
  const acked: SubmitAck[] = [];
  let sent = 0;
  let dead = false;
  const killer = setTimeout(() => {
    dead = true;
    child.proc.kill('SIGKILL');
  }, kill_after_ms);
  await new Promise<void>((resolve) => {
    let inflight = 0;
    const pump = (): void => {
      while (!dead && inflight < 64) {
        const { zone_id, cmd } = flow.next();
        inflight++;
        sent++;
        void child.submit(zone_id, cmd).then((r) => {
          inflight--;
          if (r.ok) {
            acked.push(r);
            flow.observe(r);
          }
          pump();
        });
      }
    };
    pump();
    void child.exited.then(() => resolve());
  });
  clearTimeout(killer);
  return { acked, sent };
}

async function waitForOpenIntervals(child: Child): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const states = await Promise.all(market.zone_ids.map((z) => child.dump(z)));
    if (states.every((s, k) => s.state.intervals.some((iv) => iv.interval_id === market.interval_ids[k]))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the lifecycle clock did not open the intervals');
}

async function verifyAfterRestart(child: Child, acked: SubmitAck[]): Promise<void> {
  const journals = new Map<number, JournalView>();
  for (const zone_id of market.zone_ids) journals.set(zone_id, await readJournal(db.sql, zone_id));
  // 1. Every acknowledged command, with its exact events (orders, fills), is in the journal.
  expectAckedInJournal(journals, acked);
  for (const zone_id of market.zone_ids) {
    const j = journals.get(zone_id)!;
    // 2. A clean replay of the whole journal reproduces every journaled event (no row is half a
    //    command) and its state hash equals the restarted runtime's (snapshot + tail) state.
    const clean = await recoverZone(db.url, zone_id, { from_scratch: true, verify_events: true });
    const rebuilt = await child.dump(zone_id);
    expect(rebuilt.state).toEqual(clean.engine.serialize());
    expect(rebuilt.state_hash).toBe(clean.state_hash);
    expect(clean.last_seq).toBe(j.max_seq);
    // 3. The rebuilt book holds exactly the orders the journal leaves open.
    expectBooksMatchJournal(j, rebuilt.state);
  }
  // 4. The read models, rebuilt from the journal, hold every acknowledged order and trade.
  await child.syncProjections();
  const ackedTrades = acked.flatMap((a) => a.events.flatMap((e) => (e.type === 'FILL' ? [tradeIdFor(a.zone_id, e.trade_id)] : [])));
  const ackedOrders = acked.flatMap((a) => a.events.flatMap((e) => (e.type === 'ACCEPTED' ? [e.order_id] : [])));
  const trades = new Set((await db.sql<{ id: string }[]>`select id from trades`).map((r) => Number(r.id)));
  const orders = new Set((await db.sql<{ id: string }[]>`select id from orders`).map((r) => Number(r.id)));
  expect(ackedTrades.filter((id) => !trades.has(id))).toEqual([]);
  expect(ackedOrders.filter((id) => !orders.has(id))).toEqual([]);
  let journalFills = 0;
  for (const j of journals.values()) for (const evs of j.rows.values()) for (const e of evs ?? []) if (e.type === 'FILL') journalFills++;
  expect(trades.size).toBe(journalFills);
}

test('SIGKILL at random moments loses no acknowledged order or trade; restart rebuilds the same state as a clean replay', async () => {
  const random = rng(4242);
  const allAcked: SubmitAck[] = [];
  let child = await start(true);
  await waitForOpenIntervals(child);
  let totalSent = 0;
  for (let run = 0; run < RUNS; run++) {
    const { acked, sent } = await driveUntilKilled(child, 1000 + run, 400 + Math.floor(random() * 900));
    totalSent += sent;
    allAcked.push(...acked);
    child = await start();
    await verifyAfterRestart(child, allAcked);
  }
  // The runs did real work and recovery used snapshots plus a journal tail.
  expect(allAcked.length).toBeGreaterThan(1000);
  expect(totalSent).toBeGreaterThan(allAcked.length);
  const recoveries = child.ready.zones.map((z) => z.last_recovery!);
  expect(recoveries.some((r) => r.snapshot_seq > 0)).toBe(true);
  child.proc.kill('SIGTERM');
  await child.exited;
});
