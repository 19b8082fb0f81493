import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IdIndex } from '../../ledger/id-index.js';

describe('transfer id index', () => {
  it('agrees with a Map under random inserts, lookups and deletions of the newest ids (growth included)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('insert', 'insert', 'insert', 'delete'), fc.string({ minLength: 1, maxLength: 6 })), { maxLength: 3_000 }), (ops) => {
        const idx = new IdIndex();
        const model = new Map<string, number>();
        const order: string[] = [];
        let next = 1;
        for (const [op, key] of ops) {
          if (op === 'insert' && !model.has(key)) {
            idx.insert(key, next);
            model.set(key, next++);
            order.push(key);
          } else if (op === 'delete' && order.length > 0) {
            const last = order.pop()!;
            idx.delete(last);
            model.delete(last);
            next--;
          }
          expect(idx.get(key)).toBe(model.get(key) ?? 0);
        }
        expect(idx.size).toBe(model.size);
        for (const [k, v] of model) expect(idx.get(k)).toBe(v);
      }),
      { numRuns: 100, seed: 11 },
    );
  });

  it('keeps every probe chain intact when deleting from the middle of a cluster', () => {
    const idx = new IdIndex();
    const n = 200_000;
    for (let i = 1; i <= n; i++) idx.insert(`k${i}`, i);
    for (let i = 1; i <= n; i += 3) idx.delete(`k${i}`);
    const wrong: number[] = [];
    for (let i = 1; i <= n; i++) if (idx.get(`k${i}`) !== (i % 3 === 1 ? 0 : i)) wrong.push(i);
    expect(wrong).toEqual([]);
    expect(idx.size).toBe(n - Math.ceil(n / 3));
  });
});
