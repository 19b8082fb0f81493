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
      t.open.set(o.order_id, o);
      expect(t.get(o.order_id)).toBe(o);
      t.finish(o);
      model.set(o.order_id, o);
      if (model.size > N) model.delete(model.keys().next().value!);
      // finishing an order again (e.g. a late event) keeps its place
      if (i % 7 === 0) {
        t.finish(order(base + i - 2));
        if (model.has(base + i - 2)) model.set(base + i - 2, order(base + i - 2));
      }
      expect(t.open.has(o.order_id)).toBe(false);
      for (let k = 1; k <= i; k++) expect(t.get(base + k) !== undefined).toBe(model.has(base + k));
    }
  });
});
