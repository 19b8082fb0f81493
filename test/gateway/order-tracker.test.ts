// OrderTracker keeps open orders plus the last N finished ones, evicting the oldest finished first.
import { describe, expect, it } from 'vitest';
import { OrderTracker, type TrackedOrder } from '../../gateway/publisher.js';

const order = (order_id: number): TrackedOrder => ({
  order_id, user_id: 1, client_order_id: `c${order_id}`, zone_id: 1, interval_id: 1, side: 'BUY', order_type: 'LIMIT', source: 'ANY',
  price_ticks: 1, qty_wh: 1, filled_wh: 0, status: 'ACTIVE', reason: null,
});

describe('OrderTracker', () => {
  it('remembers the last N finished orders, oldest evicted first, as a Map bounded by insertion order would', () => {
    const N = 5;
    const t = new OrderTracker(N);
    const model = new Map<number, TrackedOrder>();
    const base = 2 ** 36; // engine order ids are zone × 2^36 + seq
    for (let i = 1; i <= 40; i++) {
      const o = order(base + i);
      t.add(o);
      expect(t.get(o.order_id)).toBe(o);
      t.finish(o);
      model.set(o.order_id, o);
      if (model.size > N) model.delete(model.keys().next().value!);
      // finishing an order again (e.g. a late event) keeps its place
      if (i % 7 === 0) {
        t.finish(order(base + i - 2));
        if (model.has(base + i - 2)) model.set(base + i - 2, order(base + i - 2));
      }
      expect(t.isOpen(o.order_id)).toBe(false);
      for (let k = 1; k <= i; k++) expect(t.get(base + k) !== undefined).toBe(model.has(base + k));
    }
  });

  it('keeps orders of different zones apart (ids zone × 2^36 + seq with the same seq), and any id is a valid lookup', () => {
    const t = new OrderTracker(3);
    const a = order(1 * 2 ** 36 + 5);
    const b = order(2 * 2 ** 36 + 5);
    t.add(a);
    t.add(b);
    expect(t.get(a.order_id)).toBe(a);
    expect(t.get(b.order_id)).toBe(b);
    expect(t.openOfUser(1)).toEqual([a, b]);
    t.finish(a);
    expect(t.isOpen(a.order_id)).toBe(false);
    expect(t.isOpen(b.order_id)).toBe(true);
    expect(t.get(a.order_id)).toBe(a);
    // the oldest finished order is evicted from its own zone's part
    for (let i = 1; i <= 3; i++) t.finish(order(3 * 2 ** 36 + i));
    expect(t.get(a.order_id)).toBeUndefined();
    expect(t.get(b.order_id)).toBe(b);
    for (const id of [0, 1, 2 ** 36 - 1, 2 ** 53 - 1, 5 * 2 ** 36 + 5, 0.5, -1]) expect(t.get(id)).toBeUndefined();
  });
});
