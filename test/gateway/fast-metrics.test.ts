// The hot-path metric helpers write prom-client's own records: the exposition is the same as with
// prom-client's inc()/observe(), including after reset().
import { Counter, Histogram, Registry, exponentialBuckets } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { fastIncrement, fastObserver } from '../../gateway/fast-metrics.js';

function pair() {
  const make = () => {
    const r = new Registry();
    const h = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['type'], buckets: exponentialBuckets(0.0001, 2, 16), registers: [r] });
    const c = new Counter({ name: 'x_total', help: 'c', labelNames: ['type', 'outcome'], registers: [r] });
    return { r, h, c };
  };
  return { fast: make(), slow: make() };
}

describe('fast metrics', () => {
  it('give the same exposition as prom-client’s own inc() and observe(), also after reset()', async () => {
    const { fast, slow } = pair();
    const obs = { place: fastObserver(fast.h, { type: 'place' }), cancel: fastObserver(fast.h, { type: 'cancel' }) };
    const inc = fastIncrement(fast.c, { type: 'place', outcome: 'ok' });
    const values = [0, 0.00005, 0.0001, 0.00011, 0.0031, 0.2, 3, 10, 1e6];
    for (const v of values) {
      obs.place(v);
      slow.h.labels({ type: 'place' }).observe(v);
      inc();
      slow.c.labels({ type: 'place', outcome: 'ok' }).inc();
    }
    obs.cancel(0.002);
    slow.h.observe({ type: 'cancel' }, 0.002);
    expect(await fast.r.metrics()).toBe(await slow.r.metrics());
    expect(await fast.r.metrics()).toContain('x_total{type="place",outcome="ok"} 9');
    fast.r.resetMetrics();
    slow.r.resetMetrics();
    obs.place(0.5);
    slow.h.observe({ type: 'place' }, 0.5);
    inc();
    slow.c.inc({ type: 'place', outcome: 'ok' });
    expect(await fast.r.metrics()).toBe(await slow.r.metrics());
  });
});
