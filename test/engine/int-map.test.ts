// The typed-array hash map behind order-id lookups behaves like a Map under random inserts,
// overwrites and deletes (backward-shift deletion keeps every remaining key findable).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IntMap } from '../../engine/core/int-map.js';

describe('IntMap', () => {
  it('agrees with Map over random set/delete/get sequences, including keys above 2^32, mixed or identity hashing', () => {
    const key = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 1, max: 2000 }).map((k) => k * 4096));
    const op = fc.tuple(fc.constantFrom('set', 'delete', 'get'), key, fc.integer({ min: 0, max: 1e6 }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3000 }), fc.boolean(), (ops, identity) => {
        const m = new IntMap(4, identity);
        const ref = new Map<number, number>();
        for (const [k, key, v] of ops) {
          if (k === 'set') {
            m.set(key, v);
            ref.set(key, v);
          } else if (k === 'delete') {
            expect(m.delete(key)).toBe(ref.delete(key));
          } else {
            expect(m.get(key)).toBe(ref.get(key) ?? -1);
          }
          expect(m.size).toBe(ref.size);
        }
        for (const [key, v] of ref) expect(m.get(key)).toBe(v);
      }),
      { numRuns: 60 },
    );
  });
});
