// The state hash is streamed from the engine's records, but its value is defined as FNV-1a (2 lanes)
// over the canonical JSON of serialize(): journals and snapshots recorded with that definition must
// keep verifying. These tests pin the streamed hash to the definition.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ZoneEngine } from '../../engine/index.js';
import { hashString } from '../../engine/core/hash.js';
import { Driver, IV } from './helpers.js';
import { streamArb, ZONE } from './stream.js';

const byDefinition = (e: ZoneEngine): string => hashString(JSON.stringify(e.serialize()));

describe('state hash', () => {
  it('equals FNV-1a of the canonical JSON of serialize() after every command of random streams', () => {
    fc.assert(
      fc.property(streamArb(100, 400), (stream) => {
        const e = new ZoneEngine(ZONE);
        expect(e.stateHash()).toBe(byDefinition(e));
        for (const c of stream.commands) {
          e.execute(c);
          expect(e.stateHash()).toBe(byDefinition(e));
        }
      }),
      { numRuns: 15 },
    );
  });

  it('equals the definition with escaped and non-ASCII client order ids, negative prices and huge numbers', () => {
    const d = new Driver({ capacity_wh: Number.MAX_SAFE_INTEGER });
    const coids = ['q"uote', 'back\\slash', 'tab\tnl\n', 'ctl\u0001', 'é€', '😀', 'lone\ud800', 'lone\udc00x', '\u2028', ''];
    let price = -500;
    for (const coid of coids) d.place({ user_id: 7, client_order_id: coid, price_ticks: price++, order_id: 2 ** 40 + price });
    d.place({ user_id: 8, side: 'SELL', price_ticks: 900, qty_wh: 999_999, expire_at_ms: 2 ** 50 });
    d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 8, interval_id: IV, limit_wh: 5_000_000 });
    expect(d.e.openOrderCount).toBeGreaterThan(5);
    expect(d.e.stateHash()).toBe(byDefinition(d.e));
    expect(d.e.stateHash()).toMatch(/^[0-9a-f]{16}$/);
  });
});
