// Determinism: the engine is a pure function of its ordered command stream. The same stream twice
// gives identical events and state hash; serialise -> restore (through JSON) -> continue gives the
// same events and hash as never stopping.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeSnapshot, ZoneEngine } from '../../engine/index.js';
import type { Command, EngineEvent, EngineSnapshot } from '../../engine/index.js';
import { streamArb, ZONE } from './stream.js';

function runAll(e: ZoneEngine, commands: Command[]): EngineEvent[][] {
  return commands.map((c) => e.apply(c));
}

describe('determinism', () => {
  it('the same command stream twice gives identical events and state hash', () => {
    fc.assert(
      fc.property(streamArb(300, 1000), (stream) => {
        const a = new ZoneEngine(ZONE);
        const b = new ZoneEngine(ZONE);
        const ea = runAll(a, stream.commands);
        const eb = runAll(b, stream.commands);
        expect(JSON.stringify(eb)).toBe(JSON.stringify(ea));
        expect(b.stateHash()).toBe(a.stateHash());
      }),
      { numRuns: 25 },
    );
  });

  // through JSON (serialize) and through the binary checkpoint snapshot (snapshotBytes)
  it.each([
    ['serialise -> JSON', (e: ZoneEngine): EngineSnapshot => JSON.parse(JSON.stringify(e.serialize())) as EngineSnapshot, 40],
    ['binary snapshot (checkpoints)', (e: ZoneEngine): EngineSnapshot => decodeSnapshot(e.snapshotBytes()), 30],
  ] as const)('%s -> restore -> continue gives the same events and hashes as never stopping', (_route, snapshot, numRuns) => {
    fc.assert(
      fc.property(streamArb(300, 1000), fc.double({ min: 0, max: 1, noNaN: true }), (stream, at) => {
        const cut = Math.floor(at * stream.commands.length);
        const whole = new ZoneEngine(ZONE);
        const all = runAll(whole, stream.commands);

        const first = new ZoneEngine(ZONE);
        runAll(first, stream.commands.slice(0, cut));
        const restored = ZoneEngine.restore(snapshot(first));
        expect(restored.stateHash()).toBe(first.stateHash());
        expect(restored.checkpointHash()).toBe(first.checkpointHash());
        const rest = runAll(restored, stream.commands.slice(cut));
        expect(JSON.stringify(rest)).toBe(JSON.stringify(all.slice(cut)));
        expect(restored.stateHash()).toBe(whole.stateHash());
        expect(restored.checkpointHash()).toBe(whole.checkpointHash());
      }),
      { numRuns },
    );
  });

  it('the state hash changes when the state changes', () => {
    fc.assert(
      fc.property(streamArb(50, 200), (stream) => {
        const e = new ZoneEngine(ZONE);
        runAll(e, stream.commands);
        const h = e.stateHash();
        e.apply({ type: 'OPEN_INTERVAL', ts_ms: 1, interval_id: 999, capacity_wh: 1 });
        expect(e.stateHash()).not.toBe(h);
      }),
      { numRuns: 10 },
    );
  });

  it('identical histories hash equal, and an amend that changes a quantity changes the hash', () => {
    const mk = (): ZoneEngine => {
      const e = new ZoneEngine(ZONE);
      e.apply({ type: 'CONFIGURE_ZONE', ts_ms: 1, zone_id: ZONE, price_step_ticks: 1, lot_wh: 1, band_min_ticks: 0, band_max_ticks: 100, min_qty_wh: 1, max_qty_wh: 100, max_open_orders_per_user: 10 });
      e.apply({ type: 'OPEN_INTERVAL', ts_ms: 1, interval_id: 5, capacity_wh: 100 });
      return e;
    };
    const a = mk();
    const b = mk();
    const place = { type: 'PLACE', ts_ms: 2, order_id: 1, user_id: 1, client_order_id: 'x', zone_id: ZONE, interval_id: 5, side: 'BUY', source: 'ANY', order_type: 'LIMIT', price_ticks: 10, qty_wh: 5 } as const;
    a.apply(place);
    b.apply(place);
    expect(a.stateHash()).toBe(b.stateHash());
    b.apply({ type: 'AMEND', ts_ms: 2, order_id: 1, user_id: 1, qty_wh: 4 });
    expect(a.stateHash()).not.toBe(b.stateHash());
  });
});

describe('executeBatch', () => {
  it('gives the same events (with each command\'s ts), event ends and state as execute() one by one, on random streams cut into random batches', () => {
    fc.assert(
      fc.property(streamArb(200, 800), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 50 }), (stream, sizes) => {
        const one = new ZoneEngine(ZONE);
        const perCommand = stream.commands.map((c) => one.apply(c));
        const batched = new ZoneEngine(ZONE);
        let at = 0;
        let k = 0;
        while (at < stream.commands.length) {
          const to = Math.min(stream.commands.length, at + sizes[k++ % sizes.length]);
          const n = batched.executeBatch(stream.commands, at, to);
          const got = batched.events();
          expect(got.length).toBe(n);
          const want = perCommand.slice(at, to);
          expect(JSON.stringify(got)).toBe(JSON.stringify(want.flat()));
          let end = 0;
          want.forEach((evs, i) => {
            end += evs.length;
            expect(batched.batchEventEnd(i)).toBe(end);
          });
          at = to;
        }
        expect(batched.stateHash()).toBe(one.stateHash());
        expect(batched.serialize()).toEqual(one.serialize());
        // execute() after a batch is back to one command's events
        const c = stream.commands[stream.commands.length - 1];
        expect(batched.apply(c)).toEqual(one.apply(c));
      }),
      { numRuns: 30 },
    );
  });
});

describe('executeBatch with repeated client order ids', () => {
  it('rejects a duplicate client order id inside one batch and accepts it again after the cancel in the same batch', () => {
    const cfg: Command[] = [
      { type: 'CONFIGURE_ZONE', ts_ms: 1, zone_id: ZONE, price_step_ticks: 1, lot_wh: 1, band_min_ticks: 0, band_max_ticks: 100, min_qty_wh: 1, max_qty_wh: 100, max_open_orders_per_user: 10 },
      { type: 'OPEN_INTERVAL', ts_ms: 1, interval_id: 5, capacity_wh: 1000 },
    ];
    const p = (order_id: number, user_id: number, client_order_id: string, ts_ms: number): Command => ({ type: 'PLACE', ts_ms, order_id, user_id, client_order_id, zone_id: ZONE, interval_id: 5, side: 'BUY', source: 'ANY', order_type: 'LIMIT', price_ticks: 10, qty_wh: 5 });
    const cmds: Command[] = [...cfg, p(1, 1, 'x', 2), p(2, 1, 'x', 3), p(3, 2, 'x', 4), { type: 'CANCEL', ts_ms: 5, order_id: 1, user_id: 1 }, p(4, 1, 'x', 6), p(5, 1, 'x', 7)];
    const one = new ZoneEngine(ZONE);
    const want = cmds.flatMap((c) => one.apply(c));
    const b = new ZoneEngine(ZONE);
    b.executeBatch(cmds);
    const got = b.events();
    expect(got).toEqual(want);
    expect(got.filter((e) => e.type === 'REJECTED').map((e) => [e.order_id, e.type === 'REJECTED' && e.reason, e.ts_ms])).toEqual([
      [2, 'DUPLICATE_CLIENT_ORDER_ID', 3],
      [5, 'DUPLICATE_CLIENT_ORDER_ID', 7],
    ]);
  });
});
