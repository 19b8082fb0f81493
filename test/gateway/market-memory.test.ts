// The publisher's memory stays bounded: a channel anyone may ask for (any interval id) is answered
// without keeping state for it, and a market whose gate closed is forgotten after
// CLOSED_MARKET_RETAIN_MS (a zone closes 96 intervals a day).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSED_MARKET_RETAIN_MS } from '../../gateway/publisher.js';
import { startExchange, type Exchange } from './harness.js';

let ex: Exchange;
let clock = Date.now();
beforeAll(async () => {
  ex = await startExchange({ now: () => clock });
  for (const who of [ex.actors.alice, ex.actors.bob]) await ex.deposit(who, '1000000.00');
});
afterAll(async () => ex?.stop());

describe('publisher memory', () => {
  it('book, trades and ticker channels of intervals nobody traded answer an empty snapshot and leave no state behind', async () => {
    const sub = await ex.anon();
    for (let k = 0; k < 50; k++) {
      const interval_id = 9_000_000 + k;
      for (const channel of ['book', 'ticker', 'trades']) {
        expect((await sub.request({ type: 'subscribe', channel, zone_id: ex.zone_id, interval_id })).type).toBe('subscribed');
      }
      const snap = await sub.next((m) => m.type === 'book' && m.interval_id === interval_id && m.snapshot === true);
      expect(snap).toMatchObject({ seq: 0, bids: [], asks: [] });
      for (const channel of ['book', 'ticker', 'trades']) await sub.request({ type: 'unsubscribe', channel, zone_id: ex.zone_id, interval_id });
      expect(ex.gw.publisher!.book(ex.zone_id, interval_id)).toBeUndefined();
    }
    // malformed interval ids are refused with a code, and leave nothing behind either
    for (const interval_id of [-1, 0, 1.5, 2 ** 53, '7']) {
      const r = await sub.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id });
      expect(r).toMatchObject({ type: 'reject', op: 'subscribe' });
      expect(typeof r.code).toBe('string');
    }
    expect(ex.gw.publisher!.book(ex.zone_id, -1)).toBeUndefined();
    sub.close();
  });

  it('a closed market is kept for CLOSED_MARKET_RETAIN_MS after its gate closure, then forgotten; asking for it again gets an empty snapshot', async () => {
    const a = await ex.login(ex.actors.alice);
    const b = await ex.login(ex.actors.bob);
    const place = (c: typeof a, iv: number, o: Record<string, unknown>) =>
      c.request({ type: 'place', zone_id: ex.zone_id, interval_id: iv, order_type: 'LIMIT', qty: '1.000', ...o });
    for (const iv of [ex.interval_id, ex.interval2_id]) {
      expect((await place(a, iv, { client_order_id: `s${iv}`, side: 'SELL', source: 'SOLAR', price: '0.1000' })).type).toBe('ack');
      expect((await place(b, iv, { client_order_id: `b${iv}`, side: 'BUY', price: '0.1000' })).type).toBe('ack');
    }
    const pub = ex.gw.publisher!;
    expect(pub.book(ex.zone_id, ex.interval_id)).toBeDefined();
    const closeGate = async (interval_id: number) => {
      const r = await ex.core.submit(ex.zone_id, { type: 'GATE_CLOSE', interval_id } as never);
      expect(r.ok).toBe(true);
    };
    await closeGate(ex.interval_id);
    // still there within the retention (a late subscriber sees the final ticker)
    clock += CLOSED_MARKET_RETAIN_MS - 60_000;
    await closeGate(ex.interval2_id);
    expect(pub.book(ex.zone_id, ex.interval_id)).toBeDefined();
    const sub = await ex.anon();
    await sub.request({ type: 'subscribe', channel: 'ticker', zone_id: ex.zone_id, interval_id: ex.interval_id });
    expect(await sub.next((m) => m.type === 'ticker' && m.interval_id === ex.interval_id)).toMatchObject({ last: '0.1000', trades: 1 });
    // past it: the next gate closure in the zone evicts the first market, not the one just closed
    clock += 120_000;
    const [iv3] = await ex.db.sql<{ id: string }[]>`insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
      values (${ex.zone_id}, now() + interval '5 hours', now() + interval '5 hours 15 minutes', now() - interval '1 hour', now() + interval '4 hours', 1000000000) returning id`;
    ex.core.openInterval(ex.zone_id, Number(iv3.id), 1_000_000_000);
    await closeGate(Number(iv3.id));
    expect(pub.book(ex.zone_id, ex.interval_id)).toBeUndefined();
    expect(pub.book(ex.zone_id, ex.interval2_id)).toBeDefined();
    const late = await ex.anon();
    await late.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval_id });
    expect(await late.next((m) => m.type === 'book' && m.interval_id === ex.interval_id && m.snapshot === true)).toMatchObject({ seq: 0, bids: [], asks: [] });
    expect(pub.book(ex.zone_id, ex.interval_id)).toBeUndefined();
    for (const c of [a, b, sub, late]) c.close();
  });
});
