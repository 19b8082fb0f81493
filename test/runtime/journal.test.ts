// The journal writer: group commit, ordering, bounds and retry after a broken connection.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { CopyTupleWriter, decodeCommand, decodeEvents, encodeCommandPayload, JOURNAL_KIND_COMMAND } from '../../engine/runtime/codec.js';
import { JournalWriter, type JournalChunk, type JournalState } from '../../engine/runtime/journal.js';
import type { Command, EngineEvent } from '../../engine/core/types.js';
import { seedMarket } from './fixtures.js';
import { startProxy } from '../support/proxy.js';

let db: TestDatabase;
let zone: number;
let nextSeq = 1;

beforeAll(async () => {
  db = await createTestDatabase();
  zone = (await seedMarket(db.sql, { zones: 1, users: 1 })).zone_ids[0];
});
afterAll(async () => {
  await db?.drop();
});

function chunk(rows: number): JournalChunk {
  const w = new CopyTupleWriter(1024);
  const first_seq = nextSeq;
  for (let i = 0; i < rows; i++) {
    const seq = nextSeq++;
    const cmd: Command = { type: 'CANCEL', ts_ms: 1_700_000_000_000 + seq, order_id: seq, user_id: 1 };
    w.append(zone, seq, JOURNAL_KIND_COMMAND, encodeCommandPayload(cmd, []), cmd.ts_ms);
  }
  return { bytes: w.take(), rows, zone_id: zone, first_seq };
}

function writer(url: string, over: Partial<ConstructorParameters<typeof JournalWriter>[0]> = {}): JournalWriter {
  return new JournalWriter({ url, batch_max_rows: 100, batch_wait_ms: 1, backlog_max_rows: 10_000, slow_commit_ms: 200, commit_timeout_ms: 1000, ...over });
}

test('chunks are committed in order, in batches bounded by batch_max_rows, and each callback runs only once its rows are readable', async () => {
  const j = writer(db.url);
  const order: number[] = [];
  const visible: Promise<number>[] = [];
  for (let i = 0; i < 50; i++) {
    const c = chunk(10);
    j.append(c, () => {
      order.push(i);
      visible.push(db.sql<{ n: string }[]>`select count(*) as n from engine_journal where zone_id = ${zone} and seq = ${c.first_seq}`.then((r) => Number(r[0].n)));
    });
  }
  await j.drain();
  expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
  expect(await Promise.all(visible)).toEqual(Array(50).fill(1));
  expect(j.stats.rows).toBe(500);
  expect(j.stats.commits).toBeGreaterThanOrEqual(5);
  await j.close();
});

test('the backlog bound refuses new work until the journal catches up', async () => {
  const j = writer(db.url, { backlog_max_rows: 20 });
  expect(j.canAccept()).toBe(true);
  j.append(chunk(10), () => {});
  j.append(chunk(10), () => {});
  expect(j.backlogRows).toBe(20);
  expect(j.canAccept()).toBe(false);
  await j.drain();
  expect(j.canAccept()).toBe(true);
  await j.close();
});

test('a batch cut off by a dropped connection is retried until the database is back and is written exactly once', async () => {
  const proxy = await startProxy(db.url);
  const states: JournalState[] = [];
  const j = writer(proxy.url, { onStateChange: (s) => states.push(s) });
  j.append(chunk(5), () => {});
  await j.drain(); // connected and working
  // Only the cut batch's states count: on a loaded machine this first commit (new session, lock)
  // can itself outlast slow_commit_ms (200 ms) and report UNAVAILABLE → AVAILABLE, which is not
  // what this test is about (seen once in a full run at load ~5).
  states.length = 0;
  const c = chunk(30);
  let committed = false;
  j.append(c, () => (committed = true));
  await proxy.cut();
  await new Promise((r) => setTimeout(r, 600));
  expect(committed).toBe(false);
  expect(j.canAccept()).toBe(false);
  await proxy.restore();
  await j.drain();
  expect(committed).toBe(true);
  expect(states).toEqual(['UNAVAILABLE', 'AVAILABLE']);
  const [r] = await db.sql<{ n: string }[]>`select count(*) as n from engine_journal where zone_id = ${zone} and seq between ${c.first_seq} and ${c.first_seq + 29}`;
  expect(Number(r.n)).toBe(30);
  await j.close();
  await proxy.close();
});

test('a journal payload decodes back to the same command and events', () => {
  const cmd: Command = { type: 'PLACE', ts_ms: 5, order_id: 77, user_id: 3, client_order_id: 'é-1', zone_id: 9, interval_id: 4, side: 'SELL', source: 'WIND', order_type: 'LIMIT', price_ticks: -20, qty_wh: 1000, stp: 'CANCEL_BOTH' };
  const events: EngineEvent[] = [
    { type: 'ACCEPTED', event_seq: 1, zone_id: 9, ts_ms: 5, order_id: 77, user_id: 3, client_order_id: 'é-1', interval_id: 4, side: 'SELL', source: 'WIND', order_type: 'LIMIT', stp: 'CANCEL_BOTH', price_ticks: -20, qty_wh: 1000, seq: 1, expire_at_ms: 0 },
    { type: 'SELLER_LIMIT_SET', event_seq: 2, zone_id: 9, ts_ms: 5, interval_id: 4, user_id: 3, limit_wh: null },
  ];
  const payload = encodeCommandPayload(cmd, events);
  expect(decodeCommand(payload, 9, 5)).toEqual(cmd);
  expect(decodeEvents(payload, 9, 5)).toEqual(events);
});
