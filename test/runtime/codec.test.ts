// The runtime's fast codec paths write exactly the journal format the generic writer writes (so
// journals written before, and every reader of engine_journal, are unaffected), and everything
// decodes back to what went in: every command type, every event type, odd values included.
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { ZoneEngine } from '../../engine/index.js';
import { streamArb } from '../engine/stream.js';
import { ByteReader, CommandBatchWriter, CopyTupleWriter, decodeCommand, decodeEvents, decodeEventsAt } from '../../engine/runtime/codec.js';
import type { Command, EngineEvent } from '../../engine/core/types.js';

const Z = 9;
const TS = 1_700_000_000_123;

const commands: Command[] = [
  { type: 'CONFIGURE_ZONE', ts_ms: TS, zone_id: Z, price_step_ticks: 1, lot_wh: 1, band_min_ticks: -1000, band_max_ticks: 100000, min_qty_wh: 1, max_qty_wh: 1e9, max_open_orders_per_user: 100, status: 'ACTIVE' },
  { type: 'OPEN_INTERVAL', ts_ms: TS, interval_id: 4, capacity_wh: 1e15 },
  { type: 'GATE_CLOSE', ts_ms: TS, interval_id: 4 },
  { type: 'HALT', ts_ms: TS, policy: 'CANCEL_RESTING' },
  { type: 'MAINTENANCE', ts_ms: TS },
  { type: 'RESUME', ts_ms: TS },
  { type: 'SET_SELLER_LIMIT', ts_ms: TS, user_id: 3, interval_id: 4, limit_wh: null },
  { type: 'PLACE', ts_ms: TS, order_id: Z * 2 ** 36 + 12, user_id: 3, client_order_id: 'é-1 ünïcode', zone_id: Z, interval_id: 4, side: 'SELL', source: 'WIND', order_type: 'POST_ONLY', price_ticks: -20, qty_wh: 2 ** 40 + 1, stp: 'CANCEL_BOTH', expire_at_ms: TS + 1 },
  { type: 'PLACE', ts_ms: TS, order_id: Z * 2 ** 36 + 13, user_id: -2147483648, client_order_id: 'c1', zone_id: Z, interval_id: 2147483647, side: 'BUY', source: 'ANY', order_type: 'LIMIT', price_ticks: 1.5, qty_wh: 0 },
  { type: 'CANCEL', ts_ms: TS, order_id: 77, user_id: 3 },
  { type: 'AMEND', ts_ms: TS, order_id: 77, user_id: 3, qty_wh: 5 },
  { type: 'MASS_CANCEL', ts_ms: TS, scope: 'USER_ZONE', user_id: 3, zone_id: Z },
  { type: 'EXPIRE_DUE', ts_ms: TS },
];

const base = { zone_id: Z, ts_ms: TS };
const events: EngineEvent[] = [
  { type: 'ACCEPTED', event_seq: 1, ...base, order_id: 77, user_id: 3, client_order_id: 'é-1', interval_id: 4, side: 'SELL', source: 'WIND', order_type: 'LIMIT', stp: 'CANCEL_BOTH', price_ticks: -20, qty_wh: 1000, seq: 1, expire_at_ms: 0 },
  { type: 'REJECTED', event_seq: 2, ...base, command: 'PLACE', reason: 'BAD_TICK', order_id: 0, user_id: 3, client_order_id: 'x', interval_id: 4 },
  { type: 'FILL', event_seq: 3, ...base, trade_id: 9, interval_id: 4, maker_order_id: 1, maker_user_id: 2, taker_order_id: 3, taker_user_id: 4, taker_side: 'BUY', price_ticks: 100, qty_wh: 2 ** 33, source: 'SOLAR', maker_remaining_wh: 0, taker_remaining_wh: 7 },
  { type: 'CANCELLED', event_seq: 4, ...base, order_id: 5, user_id: 3, client_order_id: 'c', interval_id: 4, reason: 'SELF_TRADE', qty_wh: 10, filled_wh: 2 },
  { type: 'EXPIRED', event_seq: 5, ...base, order_id: 5, user_id: 3, client_order_id: 'c', interval_id: 4, cause: 'GOOD_TILL_TIME', qty_wh: 10, filled_wh: 0 },
  { type: 'AMENDED', event_seq: 6, ...base, order_id: 5, user_id: 3, client_order_id: 'c', interval_id: 4, price_ticks: 3, qty_wh: 4, remaining_wh: 4, filled_wh: 0, seq: 9, priority_kept: false },
  { type: 'BOOK_LEVEL', event_seq: 7, ...base, interval_id: 4, side: 'BUY', source: 'ANY', price_ticks: 100, qty_wh: 0, source_qty_wh: 0, source_order_count: 0 },
  { type: 'ZONE_STATUS', event_seq: 8, ...base, status: 'HALTED', policy: 'KEEP_RESTING' },
  { type: 'ZONE_CONFIGURED', event_seq: 9, ...base, config: { zone_id: Z, price_step_ticks: 1, lot_wh: 1, band_min_ticks: 0, band_max_ticks: 10, min_qty_wh: 1, max_qty_wh: 10, max_open_orders_per_user: 5, status: 'ACTIVE' } },
  { type: 'INTERVAL_OPENED', event_seq: 10, ...base, interval_id: 4, capacity_wh: 1e15 },
  { type: 'GATE_CLOSED', event_seq: 11, ...base, interval_id: 4, expired_count: 3 },
  { type: 'SELLER_LIMIT_SET', event_seq: 12, ...base, interval_id: 4, user_id: 3, limit_wh: null },
];

test('sequencer → worker path writes byte for byte the journal rows of the generic writer, and they decode back', () => {
  const generic = new CopyTupleWriter(1024);
  const batch = new CommandBatchWriter(1024);
  commands.forEach((c, i) => {
    generic.appendCommand(Z, i + 1, c, events);
    // The sequencer gets the command without ts_ms / order_id (it stamps them).
    const { ts_ms: _ts, ...submitted } = c as Command & { order_id?: number };
    const order_id = c.type === 'PLACE' ? c.order_id : 0;
    if (c.type === 'PLACE') delete (submitted as { order_id?: number }).order_id;
    batch.command(Z, i + 1, TS, (c.type === 'PLACE' ? submitted : c) as unknown as Record<string, unknown>, order_id);
  });
  const expected = generic.take();

  // The worker's side: decode each command for the engine, copy its bytes into the journal row.
  const input = batch.take();
  const r = new ByteReader().reset(input, 0);
  const out = new CopyTupleWriter(1024);
  const eventsAt: number[] = [];
  for (let i = 0; i < commands.length; i++) {
    const zone_id = r.varint();
    const seq = r.varint();
    const ts = r.float64();
    expect([zone_id, seq, ts, r.byte()]).toEqual([Z, i + 1, TS, 1]);
    const from = r.o;
    expect(r.command(zone_id, ts)).toEqual(commands[i]);
    out.appendEncodedCommand(zone_id, seq, ts, input, from, r.o, events);
    eventsAt.push(out.eventsAt);
  }
  const actual = out.take();
  expect(Buffer.from(actual).equals(Buffer.from(expected))).toBe(true);
  // Main thread: events straight from their offset; readers of whole payloads agree.
  for (const at of eventsAt) expect(decodeEventsAt(actual, at, Z, TS)).toEqual(events);
  let o = 0;
  const v = new DataView(actual.buffer, actual.byteOffset, actual.byteLength);
  for (let i = 0; i < commands.length; i++) {
    const len = v.getInt32(o + 32);
    const payload = actual.subarray(o + 36, o + 36 + len);
    expect(decodeCommand(payload, Z, TS)).toEqual(commands[i]);
    expect(decodeEvents(payload, Z, TS)).toEqual(events);
    o += 36 + len + 12;
  }
});

test('a PLACE without its zone, or with fields the codec does not know, is journaled whole and decodes to what the engine was given', () => {
  const batch = new CommandBatchWriter(256);
  const odd = { type: 'PLACE', ts_ms: TS, order_id: 5, user_id: 3, client_order_id: 'z', interval_id: 4, side: 'BUY', source: 'ANY', order_type: 'LIMIT', price_ticks: 1, qty_wh: 1, extra: [1, 2] };
  batch.command(Z, 1, TS, odd, 5);
  const input = batch.take();
  const r = new ByteReader().reset(input, 0);
  r.varint();
  r.varint();
  r.float64();
  r.byte();
  expect(r.command(Z, TS)).toEqual(odd);
});

test('the worker writes events straight from the engine buffer byte for byte as from the decoded events, over random engine runs of every command and event type', () => {
  const seen = new Set<string>();
  const cmdBytes = Uint8Array.from([1, 2, 3]);
  fc.assert(
    fc.property(streamArb(50, 300), (stream) => {
      const e = new ZoneEngine(1);
      const fromObjects = new CopyTupleWriter(256);
      const fromCells = new CopyTupleWriter(256);
      stream.commands.forEach((c, i) => {
        e.execute(c);
        const evs = e.events();
        for (const ev of evs) seen.add(ev.type);
        const a = fromObjects.appendEncodedCommand(1, i + 1, c.ts_ms, cmdBytes, 0, 3, evs);
        const b = fromCells.appendEngineCommand(1, i + 1, c.ts_ms, cmdBytes, 0, 3, e);
        expect(b).toBe(a);
        expect(fromCells.eventsAt).toBe(fromObjects.eventsAt);
      });
      expect(Buffer.from(fromCells.take()).equals(Buffer.from(fromObjects.take()))).toBe(true);
    }),
    { numRuns: 60 },
  );
  // every event type went through the comparison (the fast ones and the decoded fallbacks)
  for (const t of ['ACCEPTED', 'REJECTED', 'FILL', 'CANCELLED', 'EXPIRED', 'AMENDED', 'BOOK_LEVEL', 'ZONE_STATUS', 'ZONE_CONFIGURED', 'INTERVAL_OPENED', 'GATE_CLOSED', 'SELLER_LIMIT_SET']) {
    expect(seen.has(t), t).toBe(true);
  }
});
