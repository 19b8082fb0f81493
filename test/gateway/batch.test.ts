// place_batch end to end over real `ws` clients against the engine core and the ledger: mixed good
// and bad orders in one batch, whole-batch shape errors, other traders' ids, who may send one,
// the per-key rate limit counted per order, cancel-on-disconnect, and MessagePack.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loginMessage } from '../../gateway/auth.js';
import { MAX_BATCH_ORDERS } from '../../gateway/limits.js';
import { startExchange, type Exchange } from './harness.js';
import type { Json } from './client.js';

let ex: Exchange;
beforeAll(async () => {
  ex = await startExchange();
  await ex.deposit(ex.actors.bob, '1000.00');
});
afterAll(async () => ex?.stop());

const order = (e: Exchange, o: Record<string, unknown>) => ({ zone_id: e.zone_id, interval_id: e.interval_id, order_type: 'LIMIT', ...o });
const batch = (orders: Record<string, unknown>[]) => ({ type: 'place_batch', orders });
const resting = (e: Exchange, order_id: number) => e.core.engine(e.zone_id).order(order_id);

describe('place_batch', () => {
  it('each order is accepted or rejected on its own, in order, in one reply; accepted ones rest, fill and stream like single places', async () => {
    const alice = await ex.login(ex.actors.alice);
    const bob = await ex.login(ex.actors.bob);
    const r = await alice.request(batch([
      order(ex, { req_id: 'a', client_order_id: 'mb-1', side: 'SELL', source: 'SOLAR', price: '0.3000', qty: '1.000' }),
      order(ex, { req_id: 'b', client_order_id: 'mb-2', side: 'SELL', source: 'SOLAR', price: '0.30005', qty: '1.000' }), // between ticks
      order(ex, { client_order_id: 'mb-3', side: 'SELL', price: '0.3100', qty: '1.000' }), // a SELL without its source
      order(ex, { req_id: 7, client_order_id: 'mb-4', side: 'BUY', price: '0.1000', qty: '1.000' }), // alice has no money
      order(ex, { req_id: 'e', client_order_id: 'mb-5', side: 'SELL', source: 'WIND', price: '0.3200', qty: '2.500', order_type: 'POST_ONLY' }),
      order(ex, { req_id: 'f', client_order_id: 'mb-6', side: 'SELL', source: 'WIND', price: '99.0000', qty: '1.000' }), // above the band
      order(ex, { req_id: 'g', client_order_id: 'mb-1', side: 'SELL', source: 'WIND', price: '0.3300', qty: '1.000' }), // mb-1 is open: duplicate
    ]));
    expect(r).toMatchObject({ type: 'batch', op: 'place_batch', accepted: 2, rejected: 5 });
    expect(r.results.map((x: Json) => [x.type, x.req_id, x.client_order_id, x.code ?? x.status])).toEqual([
      ['ack', 'a', 'mb-1', 'ACTIVE'],
      ['reject', 'b', 'mb-2', 'BAD_TICK'],
      ['reject', null, 'mb-3', 'INVALID_ORDER'],
      ['reject', 7, 'mb-4', 'INSUFFICIENT_FUNDS'],
      ['ack', 'e', 'mb-5', 'ACTIVE'],
      ['reject', 'f', 'mb-6', 'PRICE_OUT_OF_BAND'],
      ['reject', 'g', 'mb-1', 'DUPLICATE_CLIENT_ORDER_ID'],
    ]);
    for (const x of r.results) expect(x.op).toBe('place');
    const [a1, , , , a5] = r.results;
    expect(a1).toMatchObject({ price: '0.3000', qty: '1.000', remaining_qty: '1.000', side: 'SELL', source: 'SOLAR', fills: [] });
    expect(a5).toMatchObject({ order_type: 'POST_ONLY', price: '0.3200', qty: '2.500' });
    expect(a1.order_id).not.toBe(a5.order_id);
    expect(resting(ex, a1.order_id)).toMatchObject({ remaining_wh: 1000, price_ticks: 3000 });
    expect(resting(ex, a5.order_id)).toMatchObject({ remaining_wh: 2500, price_ticks: 3200 });
    // the private stream reports the accepted ones only
    await alice.next((m) => m.type === 'order' && m.order_id === a5.order_id && m.status === 'ACTIVE');
    expect(alice.inbox.filter((m) => m.type === 'order' && m.order_id === a1.order_id)).toHaveLength(1);
    expect(alice.inbox.some((m) => m.type === 'order' && ['mb-2', 'mb-3', 'mb-4', 'mb-6'].includes(m.client_order_id))).toBe(false);

    // bob's batch of buys: both held, the first takes alice's 0.3000, the second rests (held), a third cannot be afforded
    const b = await bob.request(batch([
      order(ex, { client_order_id: 'bb-1', side: 'BUY', price: '0.3000', qty: '1.000' }),
      order(ex, { client_order_id: 'bb-2', side: 'BUY', price: '0.2000', qty: '1.000' }),
      order(ex, { client_order_id: 'bb-3', side: 'BUY', price: '0.2000', qty: '100000.000' }),
    ]));
    expect(b.results.map((x: Json) => x.code ?? x.status)).toEqual(['MATCHED', 'ACTIVE', 'INSUFFICIENT_FUNDS']);
    expect(b.results[0].fills).toEqual([{ trade_id: expect.any(Number), price: '0.3000', qty: '1.000', source: 'SOLAR' }]);
    const fill = await alice.next((m) => m.type === 'fill' && m.order_id === a1.order_id);
    expect(fill).toMatchObject({ liquidity: 'MAKER', qty: '1.000', trade_id: b.results[0].fills[0].trade_id });
    // bb-2's hold stays (0.20 + the fee), bb-1's fill went to escrow, bb-3 holds nothing
    const bal = (await bob.request({ type: 'balances' })).balances[0];
    expect(bal).toMatchObject({ currency: 'EUR', escrow: '0.30' });
    expect(bal.held).not.toBe('0.00');
    await bob.request({ type: 'cancel', order_id: b.results[1].order_id });
    expect((await bob.request({ type: 'balances' })).balances[0]).toMatchObject({ held: '0.00', escrow: '0.30', available: '999.70' });
    await alice.request({ type: 'cancel', order_id: a5.order_id });
    alice.close();
    bob.close();
  });

  it('a shape error anywhere rejects the whole batch with INVALID_FIELD naming the order, and nothing is submitted', async () => {
    const alice = await ex.login(ex.actors.alice);
    const carol = ex.actors.carol;
    const good = order(ex, { client_order_id: 'sh-ok', side: 'SELL', source: 'SOLAR', price: '0.4000', qty: '1.000' });
    const cases: [unknown, string][] = [
      [[], '"orders" must have at least 1 item'],
      [Array.from({ length: MAX_BATCH_ORDERS + 1 }, (_, i) => ({ ...good, client_order_id: `sh-${i}` })), `"orders" must have at most ${MAX_BATCH_ORDERS} items`],
      [[good, 'SELL'], '"orders[1]" must be object, got string'],
      // another trader's id in an order: there is no such field (the session's user places)
      [[good, { ...good, client_order_id: 'sh-2', user_id: carol.user_id }], 'unknown field "orders[1].user_id"'],
      [[good, { ...good, client_order_id: 'sh-3', type: 'place' }], 'unknown field "orders[1].type"'],
      [[good, good, { ...good, qty: undefined }], '"orders[2].qty" is required'],
      [[good, { ...good, price: 0.4 }], '"orders[1].price" must be string, got number'],
    ];
    for (const [orders, message] of cases) {
      expect(await alice.request({ type: 'place_batch', orders })).toMatchObject({ type: 'reject', op: 'place_batch', code: 'INVALID_FIELD', message });
    }
    expect(await alice.request({ type: 'place_batch' })).toMatchObject({ code: 'INVALID_FIELD', message: '"orders" is required' });
    expect(await alice.request({ type: 'place_batch', orders: {} })).toMatchObject({ code: 'INVALID_FIELD', message: '"orders" must be array, got object' });
    // none of those orders reached the engine
    await alice.request({ type: 'ping' });
    expect(alice.inbox.some((m) => m.type === 'order' || m.type === 'ack')).toBe(false);
    const carolSession = await ex.login(carol);
    await carolSession.request({ type: 'ping' });
    expect(carolSession.inbox.some((m) => m.type === 'order')).toBe(false);
    alice.close();
    carolSession.close();
  });

  it('another trader’s client_order_id is a different order: both rest, and neither trader sees the other’s acks or stream', async () => {
    const alice = await ex.login(ex.actors.alice);
    const carol = await ex.login(ex.actors.carol);
    const a = await alice.request(batch([order(ex, { client_order_id: 'same-1', side: 'SELL', source: 'SOLAR', price: '0.6000', qty: '1.000' })]));
    const c = await carol.request(batch([
      order(ex, { client_order_id: 'same-1', side: 'SELL', source: 'HYDRO', price: '0.6100', qty: '2.000' }),
      order(ex, { client_order_id: 'same-1', side: 'SELL', source: 'HYDRO', price: '0.6200', qty: '2.000' }), // carol's own duplicate
    ]));
    expect(a.results[0]).toMatchObject({ type: 'ack', client_order_id: 'same-1', status: 'ACTIVE' });
    expect(c.results.map((x: Json) => x.code ?? x.status)).toEqual(['ACTIVE', 'DUPLICATE_CLIENT_ORDER_ID']);
    const aid = a.results[0].order_id;
    const cid = c.results[0].order_id;
    expect(resting(ex, aid)).toMatchObject({ user_id: ex.actors.alice.user_id, price_ticks: 6000 });
    expect(resting(ex, cid)).toMatchObject({ user_id: ex.actors.carol.user_id, price_ticks: 6100 });
    // carol cannot cancel alice's order by its id, alice's stays
    expect(await carol.request({ type: 'cancel', order_id: aid })).toMatchObject({ code: 'UNKNOWN_ORDER' });
    expect(resting(ex, aid)).toBeDefined();
    await carol.next((m) => m.type === 'order' && m.order_id === cid);
    await alice.request({ type: 'ping' });
    await carol.request({ type: 'ping' });
    expect(alice.inbox.some((m) => m.order_id === cid || (Array.isArray(m.results) && m.results.some((x: Json) => x.order_id === cid)))).toBe(false);
    expect(carol.inbox.some((m) => m.order_id === aid && m.type !== 'reject')).toBe(false);
    await alice.request({ type: 'cancel', order_id: aid });
    await carol.request({ type: 'cancel', order_id: cid });
    alice.close();
    carol.close();
  });

  it('anonymous sessions and operators are refused for the whole batch; a CONSUMER’s sells are refused one by one', async () => {
    const anon = await ex.anon();
    const o = order(ex, { client_order_id: 'who-1', side: 'SELL', source: 'SOLAR', price: '0.5000', qty: '1.000' });
    expect(await anon.request(batch([o]))).toMatchObject({ type: 'reject', op: 'place_batch', code: 'UNAUTHORIZED' });
    const op = await ex.login(ex.actors.operator);
    expect(await op.request(batch([o]))).toMatchObject({ type: 'reject', op: 'place_batch', code: 'FORBIDDEN' });
    const consumer = await ex.login(ex.actors.consumer);
    const r = await consumer.request(batch([o, order(ex, { client_order_id: 'who-2', side: 'BUY', price: '0.1000', qty: '1.000' })]));
    expect(r.results.map((x: Json) => x.code)).toEqual(['FORBIDDEN', 'INSUFFICIENT_FUNDS']);
    expect(r).toMatchObject({ accepted: 0, rejected: 2 });
    anon.close();
    op.close();
    consumer.close();
  });

  it('orders placed by batch are cancelled when their cancel-on-disconnect session closes', async () => {
    const bot = await ex.login(ex.actors.alice, { cancel_on_disconnect: true });
    const watcher = await ex.login(ex.actors.alice);
    const r = await bot.request(batch([
      order(ex, { client_order_id: 'cod-b1', side: 'SELL', source: 'SOLAR', price: '0.5000', qty: '1.000' }),
      order(ex, { client_order_id: 'cod-b2', side: 'SELL', source: 'SOLAR', price: '0.5100', qty: '1.000', interval_id: ex.interval2_id }),
    ]));
    expect(r).toMatchObject({ accepted: 2 });
    bot.close();
    for (const x of r.results) {
      const c = await watcher.next((m) => m.type === 'order' && m.order_id === x.order_id && m.status === 'CANCELLED');
      expect(c.reason).toBe('MASS_CANCEL');
      expect(resting(ex, x.order_id)).toBeUndefined();
    }
    watcher.close();
  });

  it('MessagePack sessions get the same reply as objects', async () => {
    const c = await ex.login(ex.actors.carol, {}, { msgpack: true });
    const r = await c.request(batch([
      order(ex, { req_id: 1, client_order_id: 'mp-1', side: 'SELL', source: 'WIND', price: '0.7000', qty: '1.000' }),
      order(ex, { req_id: 2, client_order_id: 'mp-2', side: 'SELL', source: 'WIND', price: '0.7', qty: '0.0001' }),
    ]));
    expect(r).toMatchObject({ type: 'batch', op: 'place_batch', accepted: 1, rejected: 1 });
    expect(r.results[0]).toMatchObject({ type: 'ack', req_id: 1, op: 'place', client_order_id: 'mp-1', status: 'ACTIVE', price: '0.7000' });
    expect(r.results[1]).toMatchObject({ type: 'reject', req_id: 2, op: 'place', code: 'INVALID_ORDER', client_order_id: 'mp-2' });
    await c.request({ type: 'cancel', order_id: r.results[0].order_id });
    c.close();
  });
});

describe('place_batch and the per-key rate limit (frozen clock: no refill)', () => {
  const LIMITS = { key_orders_burst: 5, key_orders_per_s: 3 };
  const frozen = Date.now();
  let rx: Exchange;
  beforeAll(async () => {
    rx = await startExchange({ limits: LIMITS, now: () => frozen });
  });
  afterAll(async () => rx?.stop());

  it(`each order takes a token: of ${LIMITS.key_orders_burst + 2} orders the first ${LIMITS.key_orders_burst} are placed, the rest RATE_LIMITED; the key then has none left`, async () => {
    const c = await rx.anon();
    expect(await c.request(loginMessage(rx.actors.alice.creds, frozen))).toMatchObject({ type: 'logged_in' });
    const orders = Array.from({ length: LIMITS.key_orders_burst + 2 }, (_, i) => order(rx, { client_order_id: `rl-${i}`, side: 'SELL', source: 'SOLAR', price: `0.${5000 + i}`, qty: '1.000' }));
    const r = await c.request(batch(orders));
    expect(r.results.map((x: Json) => x.code ?? x.status)).toEqual([...Array(LIMITS.key_orders_burst).fill('ACTIVE'), 'RATE_LIMITED', 'RATE_LIMITED']);
    expect(r.results[LIMITS.key_orders_burst]).toMatchObject({ client_order_id: `rl-${LIMITS.key_orders_burst}`, limit: LIMITS.key_orders_per_s });
    for (const x of r.results.slice(0, LIMITS.key_orders_burst)) expect(resting(rx, x.order_id)).toBeDefined();
    // exactly the placed ones reach the private stream
    await c.next((m) => m.type === 'order' && m.order_id === r.results[LIMITS.key_orders_burst - 1].order_id);
    await c.request({ type: 'ping' });
    expect(c.inbox.filter((m) => m.type === 'order').map((m) => m.client_order_id)).toEqual(orders.slice(0, LIMITS.key_orders_burst).map((o) => (o as Json).client_order_id));
    // a single place and a further batch are refused too
    expect(await c.request({ type: 'place', ...order(rx, { client_order_id: 'rl-x', side: 'SELL', source: 'SOLAR', price: '0.6000', qty: '1.000' }) })).toMatchObject({ code: 'RATE_LIMITED' });
    const again = await c.request(batch([order(rx, { client_order_id: 'rl-y', side: 'SELL', source: 'SOLAR', price: '0.6000', qty: '1.000' })]));
    expect(again).toMatchObject({ type: 'batch', accepted: 0, rejected: 1, results: [{ code: 'RATE_LIMITED' }] });
    c.close();
  });
});
