// Determinism: the engine is a pure function of its ordered command stream. The same stream twice
// gives identical events and state hash; serialise -> restore (through JSON) -> continue gives the
// same events and hash as never stopping.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ZoneEngine } from '../../engine/index.js';
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

  it('serialise -> restore -> continue gives the same events and hash as never stopping', () => {
    fc.assert(
      fc.property(streamArb(300, 1000), fc.double({ min: 0, max: 1, noNaN: true }), (stream, at) => {
        const cut = Math.floor(at * stream.commands.length);
        const whole = new ZoneEngine(ZONE);
        const all = runAll(whole, stream.commands);

        const first = new ZoneEngine(ZONE);
        runAll(first, stream.commands.slice(0, cut));
        const snap = JSON.parse(JSON.stringify(first.serialize())) as EngineSnapshot;
        const restored = ZoneEngine.restore(snap);
        expect(restored.stateHash()).toBe(first.stateHash());
        const rest = runAll(restored, stream.commands.slice(cut));
        expect(JSON.stringify(rest)).toBe(JSON.stringify(all.slice(cut)));
        expect(restored.stateHash()).toBe(whole.stateHash());
      }),
      { numRuns: 40 },
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
