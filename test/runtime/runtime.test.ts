// The runtime's internal API: submit → durable ack, subscriptions, ids, the interval clock,
// worker failure and restart, read models rebuilt from the journal.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startRuntime, type Runtime } from '../../engine/runtime/runtime.js';
import { orderIdFor } from '../../engine/runtime/ids.js';
import { rebuildProjections } from '../../engine/runtime/projections.js';
import { recoverZone } from '../../engine/runtime/recovery.js';
import { encodeCheckpointPayload, encodeState } from '../../engine/runtime/codec.js';
import { decodeSnapshot, isBinarySnapshot, ZoneEngine } from '../../engine/index.js';
import type { ClosedInterval, CommittedEvents, SubmitAck, SubmitCommand } from '../../engine/runtime/types.js';
import { addInterval, rng, seedMarket, type Market } from './fixtures.js';
import { expectAckedInJournal, orderFlow, readJournal } from './verify.js';

let db: TestDatabase;
let market: Market;
let rt: Runtime;
const closed: ClosedInterval[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await createTestDatabase();
  market = await seedMarket(db.sql, { zones: 2, users: 4 });
  rt = await startRuntime({ database_url: db.url, workers: 2, clock_tick_ms: 50, intervals_refresh_ms: 100, snapshot_every: 50, onIntervalClosed: (c) => closed.push(c) });
  for (const [k, z] of market.zone_ids.entries()) {
    for (let i = 0; i < 100 && !(await rt.dump(z)).state.intervals.some((iv) => iv.interval_id === market.interval_ids[k]); i++) await sleep(50);
  }
});
afterAll(async () => {
  await rt?.stop();
  await db?.drop();
});

type PlaceInput = Extract<SubmitCommand, { type: 'PLACE' }>;

function place(k: number, user: number, side: 'BUY' | 'SELL', price_ticks: number, qty_wh: number, coid: string): PlaceInput {
  return {
    type: 'PLACE',
    user_id: market.user_ids[user],
    client_order_id: coid,
    zone_id: market.zone_ids[k],
    interval_id: market.interval_ids[k],
    side,
    source: side === 'SELL' ? 'SOLAR' : 'ANY',
    order_type: 'LIMIT',
    price_ticks,
    qty_wh,
  };
}

test('an acknowledged command carries its committed events, its seq and an order id made of zone and seq, and is already in the journal', async () => {
  const z = market.zone_ids[0];
  const sell = await rt.submit(z, place(0, 0, 'SELL', 500, 100, 'api-sell'));
  const buy = await rt.submit(z, place(0, 1, 'BUY', 510, 40, 'api-buy'));
  expect(sell.ok && buy.ok).toBe(true);
  if (!sell.ok || !buy.ok) return;
  expect(buy.seq).toBe(sell.seq + 1);
  expect(sell.order_id).toBe(orderIdFor(z, sell.seq));
  expect(sell.events.map((e) => e.type)).toEqual(['ACCEPTED', 'BOOK_LEVEL']);
  const fill = buy.events.find((e) => e.type === 'FILL');
  expect(fill).toMatchObject({ maker_order_id: sell.order_id, taker_order_id: buy.order_id, price_ticks: 500, qty_wh: 40 });
  expectAckedInJournal(new Map([[z, await readJournal(db.sql, z)]]), [sell, buy]);
});

test('engine rejections are acknowledged results with a REJECTED event; runtime errors are values with a stable code', async () => {
  const z = market.zone_ids[0];
  const bad = await rt.submit(z, { ...place(0, 0, 'SELL', 500, 100, 'r1'), price_ticks: 10_000_000 });
  expect(bad.ok && bad.events[0]).toMatchObject({ type: 'REJECTED', reason: 'PRICE_OUT_OF_BAND' });
  expect(await rt.submit(999_999, place(0, 0, 'SELL', 500, 1, 'x'))).toMatchObject({ ok: false, code: 'UNKNOWN_ZONE' });
  expect(await rt.submit(market.zone_ids[1], place(0, 0, 'SELL', 500, 1, 'x'))).toMatchObject({ ok: false, code: 'INVALID_COMMAND' });
});

test('subscribers receive committed events per zone and per user, in seq order', async () => {
  const z = market.zone_ids[1];
  const zoneSeen: CommittedEvents[] = [];
  const userSeen: CommittedEvents[] = [];
  const offZone = rt.subscribeZone(z, (c) => zoneSeen.push(c));
  const offUser = rt.subscribeUser(market.user_ids[2], (c) => userSeen.push(c));
  const acks: SubmitAck[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await rt.submit(z, place(1, i % 2 === 0 ? 2 : 3, i % 2 === 0 ? 'SELL' : 'BUY', 700, 10, `sub-${i}`));
    if (r.ok) acks.push(r);
  }
  offZone();
  offUser();
  expect(acks.length).toBe(20);
  const seqs = zoneSeen.map((c) => c.seq);
  expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  for (const a of acks) expect(zoneSeen.find((c) => c.seq === a.seq)?.events).toEqual(a.events);
  // User 2 sees its own orders and both sides of its fills, never anything that is not about it.
  expect(userSeen.length).toBeGreaterThanOrEqual(10);
  for (const c of userSeen) {
    for (const e of c.events) {
      const users = e.type === 'FILL' ? [e.maker_user_id, e.taker_user_id] : [(e as { user_id: number }).user_id];
      expect(users).toContain(market.user_ids[2]);
    }
  }
  expect(userSeen.some((c) => c.events.some((e) => e.type === 'FILL'))).toBe(true);
});

test('the sequencer clock opens an interval at gate opening, expires its resting orders at gate closure and hands it off', async () => {
  const z = market.zone_ids[0];
  const now = Date.now();
  const iv = await addInterval(db.sql, z, now - 1000, now + 2500);
  // The runtime re-reads delivery_intervals every 100 ms here; wait for the interval to open.
  let opened = false;
  for (let i = 0; i < 200 && !opened; i++) {
    opened = (await rt.dump(z)).state.intervals.some((x) => x.interval_id === iv);
    if (!opened) await sleep(50);
  }
  expect(opened).toBe(true);
  const r = await rt.submit(z, { ...place(0, 0, 'SELL', 600, 50, 'gate-1'), interval_id: iv });
  expect(r.ok && r.events[0].type).toBe('ACCEPTED');
  for (let i = 0; i < 200 && !closed.some((c) => c.interval_id === iv); i++) await sleep(50);
  const hand = closed.find((c) => c.interval_id === iv);
  expect(hand).toMatchObject({ zone_id: z, interval_id: iv, expired_count: 1 });
  const journal = await readJournal(db.sql, z);
  const expired = [...journal.rows.values()].flatMap((evs) => evs ?? []).find((e) => e.type === 'EXPIRED' && r.ok && e.order_id === r.order_id);
  expect(expired).toMatchObject({ cause: 'GATE_CLOSE', qty_wh: 50 });
  const late = await rt.submit(z, { ...place(0, 1, 'BUY', 600, 50, 'gate-2'), interval_id: iv });
  expect(late.ok && late.events[0]).toMatchObject({ type: 'REJECTED', reason: 'INTERVAL_CLOSED' });
  for (let i = 0; i < 40; i++) {
    const [row] = await db.sql<{ status: string }[]>`select status from delivery_intervals where id = ${iv}`;
    if (row.status === 'CLOSED') break;
    await sleep(50);
  }
  const [row] = await db.sql<{ status: string }[]>`select status from delivery_intervals where id = ${iv}`;
  expect(row.status).toBe('CLOSED');
});

test('a worker that dies is detected; its zones answer ZONE_UNAVAILABLE meanwhile and come back from the journal with the same state', async () => {
  const z = market.zone_ids[0];
  const worker = rt.status().zones.find((s) => s.zone_id === z)!.worker;
  const before = await rt.dump(z);
  rt.crashWorker(worker);
  const during: string[] = [];
  let after: SubmitAck | null = null;
  for (let i = 0; i < 400 && after === null; i++) {
    const r = await rt.submit(z, place(0, 0, 'SELL', 900, 10, `after-crash-${i}`));
    if (r.ok) after = r;
    else during.push(r.code);
    if (!r.ok) await sleep(10);
  }
  expect(during.length).toBeGreaterThan(0);
  expect(new Set(during)).toEqual(new Set(['ZONE_UNAVAILABLE']));
  expect(after).not.toBeNull();
  expect(rt.status().worker_restarts).toBe(1);
  // The restarted zone continued from exactly the state it had (its next order got the next seq).
  const journal = await readJournal(db.sql, z);
  expect(after!.seq).toBe(journal.max_seq);
  const clean = await recoverZone(db.url, z, { from_scratch: true, verify_events: true });
  expect((await rt.dump(z)).state_hash).toBe(clean.state_hash);
  // Every order resting before the crash is still there (none of these orders crossed them).
  const restored = new Set((await rt.dump(z)).state.orders.map((o) => o.order_id));
  expect(before.state.orders.filter((o) => !restored.has(o.order_id))).toEqual([]);
});

test('a checkpoint whose worker dies before its snapshot is made is answered (rejected or saved), never left hanging', async () => {
  // The crash lands before the batch, between the batch and the snapshot's encoding, or after it,
  // depending on timing: each way the checkpoint must be answered and the zone must come back.
  const z = market.zone_ids[0];
  for (let round = 0; round < 3; round++) {
    const worker = rt.status().zones.find((s) => s.zone_id === z)!.worker;
    const restarts = rt.status().worker_restarts;
    const outcome = rt.checkpoint(z).then(
      (c) => `saved ${c.state_hash}`,
      (e: Error) => `rejected: ${e.message}`,
    );
    await new Promise((r) => setImmediate(r)); // the batch holding the CHECKPOINT goes to the worker
    rt.crashWorker(worker);
    const got = await Promise.race([outcome, sleep(15_000).then(() => 'hanging')]);
    expect(got).toMatch(/^(saved v2:[0-9a-f]{16}|rejected: .+)$/);
    const back = (): boolean => rt.status().worker_restarts === restarts + 1 && rt.status().zones.find((s) => s.zone_id === z)!.status === 'READY';
    for (let i = 0; i < 500 && !back(); i++) await sleep(10);
    expect(back()).toBe(true);
    const r = await rt.submit(z, place(0, 1, 'BUY', 100, 10, `after-checkpoint-crash-${round}`));
    expect(r.ok).toBe(true);
  }
  // it recovers from whatever snapshot was saved to the same state as a clean replay
  const clean = await recoverZone(db.url, z, { from_scratch: true });
  expect((await recoverZone(db.url, z)).state_hash).toBe(clean.state_hash);
});

test('the orders and trades read models rebuilt from the journal equal the live projection', async () => {
  const flow = orderFlow(market, rng(99));
  const acks: SubmitAck[] = [];
  await Promise.all(
    Array.from({ length: 400 }, async () => {
      const { zone_id, cmd } = flow.next();
      const r = await rt.submit(zone_id, cmd);
      if (r.ok) acks.push(r);
    }),
  );
  await rt.syncProjections();
  const orders = await db.sql`select * from orders order by id`;
  const trades = await db.sql`select id, buy_order_id, sell_order_id, buyer_id, seller_id, price_ticks, qty_wh, zone_seq from trades order by id`;
  const fills = acks.reduce((n, a) => n + a.events.filter((e) => e.type === 'FILL').length, 0);
  expect(trades.length).toBeGreaterThanOrEqual(fills);
  // damage the read models: the rebuild must put back exactly what the journal says
  await db.sql`update orders set price_ticks = price_ticks + 1 where id = (select min(id) from orders)`;
  await db.sql`delete from trades where id = (select max(id) from trades)`;
  expect(await db.sql`select * from orders order by id`).not.toEqual(orders);
  await rebuildProjections(db.sql, market.zone_ids);
  expect(await db.sql`select * from orders order by id`).toEqual(orders);
  expect(await db.sql`select id, buy_order_id, sell_order_id, buyer_id, seller_id, price_ticks, qty_wh, zone_seq from trades order by id`).toEqual(trades);
  // Quantities add up: an order's filled quantity is the sum of its trades.
  const [bad] = await db.sql<{ n: string }[]>`
    select count(*) as n from orders o
    where o.filled_wh <> coalesce((select sum(qty_wh) from trades t where t.buy_order_id = o.id or t.sell_order_id = o.id), 0)`;
  expect(Number(bad.n)).toBe(0);
});

test('a checkpoint records the state hash in the journal and a snapshot; recovery from it equals a clean replay', async () => {
  const z = market.zone_ids[1];
  const cp = await rt.checkpoint(z);
  const [snap] = await db.sql<{ seq: string; state_hash: string }[]>`select seq, state_hash from engine_snapshots where zone_id = ${z} order by seq desc limit 1`;
  expect(Number(snap.seq)).toBe(cp.seq);
  expect(snap.state_hash).toBe(cp.state_hash);
  await rt.submit(z, place(1, 0, 'SELL', 800, 10, 'post-cp'));
  const fromSnapshot = await recoverZone(db.url, z);
  const clean = await recoverZone(db.url, z, { from_scratch: true });
  expect(fromSnapshot.snapshot_seq).toBe(cp.seq);
  expect(fromSnapshot.replayed_rows).toBeGreaterThan(0);
  expect(fromSnapshot.checkpoints_verified).toBeGreaterThan(0);
  expect(fromSnapshot.state_hash).toBe(clean.state_hash);
});

test('checkpoints are binary snapshots with a v2 hash; older ones (msgpack + stateHash) still verify; a hash that does not match is refused', async () => {
  const z = market.zone_ids[1];
  const cp = await rt.checkpoint(z);
  expect(cp.state_hash).toMatch(/^v2:[0-9a-f]{16}$/);
  await rt.submit(z, place(1, 2, 'BUY', 700, 10, 'after-v2-cp'));
  const [row] = await db.sql<{ state: Uint8Array }[]>`select state from engine_snapshots where zone_id = ${z} and seq = ${cp.seq}`;
  expect(isBinarySnapshot(row.state)).toBe(true);
  const state = decodeSnapshot(row.state);
  const engine = ZoneEngine.restore(state);
  expect(engine.checkpointHash()).toBe(cp.state_hash);
  const clean = await recoverZone(db.url, z, { from_scratch: true });

  // the same checkpoint as the previous version wrote it
  const oldHash = engine.stateHash();
  await db.sql`update engine_snapshots set state = ${Buffer.from(encodeState(state))}, state_hash = ${oldHash} where zone_id = ${z} and seq = ${cp.seq}`;
  await db.sql`update engine_journal set payload = ${Buffer.from(encodeCheckpointPayload(oldHash))} where zone_id = ${z} and seq = ${cp.seq}`;
  const fromOld = await recoverZone(db.url, z);
  expect(fromOld.snapshot_seq).toBe(cp.seq);
  expect(fromOld.state_hash).toBe(clean.state_hash);

  // a snapshot that is not the state its hash names, and a journal checkpoint that disagrees with the replay
  const other = ZoneEngine.restore({ ...state, orders: state.orders.slice(1) });
  await db.sql`update engine_snapshots set state = ${Buffer.from(other.snapshotBytes())}, state_hash = ${cp.state_hash} where zone_id = ${z} and seq = ${cp.seq}`;
  await db.sql`update engine_journal set payload = ${Buffer.from(encodeCheckpointPayload(cp.state_hash))} where zone_id = ${z} and seq = ${cp.seq}`;
  expect(state.orders.length).toBeGreaterThan(0);
  await expect(recoverZone(db.url, z)).rejects.toMatchObject({ code: 'RECOVERY_HASH_MISMATCH' });
  await db.sql`update engine_journal set payload = ${Buffer.from(encodeCheckpointPayload('v2:0123456789abcdef'))} where zone_id = ${z} and seq = ${cp.seq}`;
  await expect(recoverZone(db.url, z, { from_scratch: true })).rejects.toMatchObject({ code: 'RECOVERY_HASH_MISMATCH' });
  // put the checkpoint back as it was written
  await db.sql`update engine_snapshots set state = ${Buffer.from(row.state)}, state_hash = ${cp.state_hash} where zone_id = ${z} and seq = ${cp.seq}`;
  await db.sql`update engine_journal set payload = ${Buffer.from(encodeCheckpointPayload(cp.state_hash))} where zone_id = ${z} and seq = ${cp.seq}`;
  expect((await recoverZone(db.url, z)).state_hash).toBe(clean.state_hash);
});
