// End-to-end trading over real WebSocket clients against the real engine core and ledger.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loginMessage } from '../../gateway/auth.js';
import { MSGPACK_SUBPROTOCOL } from '../../gateway/protocol.js';
import { Client } from './client.js';
import { startExchange, type Exchange } from './harness.js';

let ex: Exchange;
beforeAll(async () => {
  ex = await startExchange();
  await ex.deposit(ex.actors.bob, '1000.00');
});
afterAll(async () => ex?.stop());

const place = (ex: Exchange, o: Record<string, unknown>) => ({
  type: 'place', zone_id: ex.zone_id, interval_id: ex.interval_id, order_type: 'LIMIT', ...o,
});

describe('login', () => {
  it('logs in with an HMAC key and with an Ed25519 key and reports user and role', async () => {
    const a = await ex.anon();
    const ra = await a.request(loginMessage(ex.actors.alice.creds));
    expect(ra).toMatchObject({ type: 'logged_in', user_id: ex.actors.alice.user_id, role: 'PROSUMER', key_id: ex.actors.alice.creds.key_id });
    const b = await ex.anon();
    const rb = await b.request(loginMessage(ex.actors.bob.creds));
    expect(rb).toMatchObject({ type: 'logged_in', user_id: ex.actors.bob.user_id });
    a.close();
    b.close();
  });

  it('a second login on the same connection is refused ALREADY_LOGGED_IN and the session keeps working', async () => {
    const c = await ex.login(ex.actors.alice);
    expect(await c.request(loginMessage(ex.actors.alice.creds))).toMatchObject({ type: 'reject', code: 'ALREADY_LOGGED_IN' });
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    c.close();
  });

  it('MessagePack frames when the client offers the kwx.msgpack subprotocol', async () => {
    const c = await Client.connect(ex.url, { protocols: [MSGPACK_SUBPROTOCOL], msgpack: true });
    expect(c.ws.protocol).toBe(MSGPACK_SUBPROTOCOL);
    expect(c.inbox[0]).toMatchObject({ type: 'welcome', encoding: 'msgpack' });
    expect(await c.request(loginMessage(ex.actors.carol.creds))).toMatchObject({ type: 'logged_in', user_id: ex.actors.carol.user_id });
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    c.close();
  });
});

describe('place → ack → fill', () => {
  it('both sides see the fill with matching private order/fill updates, and the buyer’s balance moves from held to escrow', async () => {
    const seller = await ex.login(ex.actors.alice);
    const buyer = await ex.login(ex.actors.bob);
    const sell = await seller.request(place(ex, { client_order_id: 's-1', side: 'SELL', source: 'SOLAR', price: '0.2000', qty: '2.000' }));
    expect(sell).toMatchObject({ type: 'ack', op: 'place', client_order_id: 's-1', status: 'ACTIVE', price: '0.2000', qty: '2.000', remaining_qty: '2.000' });

    // bob buys 1.5 kWh at up to 0.2500 EUR/kWh: holds 0.375 → 0.37 (rounded down to cents), fills at 0.2000 → escrow 0.30
    const buy = await buyer.request(place(ex, { client_order_id: 'b-1', side: 'BUY', price: '0.2500', qty: '1.500' }));
    expect(buy).toMatchObject({ type: 'ack', op: 'place', status: 'MATCHED', filled_qty: '1.500', remaining_qty: '0.000' });
    expect(buy.fills).toEqual([{ trade_id: expect.any(Number), price: '0.2000', qty: '1.500', source: 'SOLAR' }]);
    const trade_id = buy.fills[0].trade_id;

    const sellerFill = await seller.next((m) => m.type === 'fill' && m.trade_id === trade_id);
    const buyerFill = await buyer.next((m) => m.type === 'fill' && m.trade_id === trade_id);
    expect(sellerFill).toMatchObject({ order_id: sell.order_id, side: 'SELL', price: '0.2000', qty: '1.500', liquidity: 'MAKER', source: 'SOLAR' });
    expect(buyerFill).toMatchObject({ order_id: buy.order_id, side: 'BUY', price: '0.2000', qty: '1.500', liquidity: 'TAKER' });
    const sellerOrder = await seller.next((m) => m.type === 'order' && m.order_id === sell.order_id && m.status === 'PARTIALLY_FILLED');
    expect(sellerOrder).toMatchObject({ filled_qty: '1.500', remaining_qty: '0.500' });
    await buyer.next((m) => m.type === 'order' && m.order_id === buy.order_id && m.status === 'MATCHED');

    const bal = await buyer.next((m) => m.type === 'balance' && m.escrow !== '0.00');
    expect(bal).toMatchObject({ currency: 'EUR', available: '999.70', held: '0.00', escrow: '0.30' });
    expect(await buyer.request({ type: 'balances' })).toMatchObject({ balances: [{ currency: 'EUR', available: '999.70', held: '0.00', escrow: '0.30' }] });
    // the seller is paid at settlement, so its wallet shows nothing in escrow
    expect((await seller.request({ type: 'balances' })).balances).toEqual([{ currency: 'EUR', available: '0.00', held: '0.00', escrow: '0.00' }]);
    // neither side received the other's private updates
    expect(seller.inbox.some((m) => m.type === 'fill' && m.order_id === buy.order_id)).toBe(false);
    expect(buyer.inbox.some((m) => m.type === 'order' && m.order_id === sell.order_id)).toBe(false);
    seller.close();
    buyer.close();
  });

  it('a buy beyond the available balance is rejected INSUFFICIENT_FUNDS and never reaches the book', async () => {
    const carol = await ex.login(ex.actors.carol);
    const r = await carol.request(place(ex, { client_order_id: 'c-poor', side: 'BUY', price: '0.5000', qty: '10.000' }));
    expect(r).toMatchObject({ type: 'reject', op: 'place', code: 'INSUFFICIENT_FUNDS', client_order_id: 'c-poor' });
    expect(ex.core.engine(ex.zone_id).openOrdersOfUser(ex.actors.carol.user_id)).toEqual([]);
    carol.close();
  });

  it('engine rejections pass through with their code (BAD_TICK at the edge, PRICE_OUT_OF_BAND from the engine)', async () => {
    const a = await ex.login(ex.actors.alice);
    expect(await a.request(place(ex, { client_order_id: 'x1', side: 'SELL', source: 'WIND', price: '0.20005', qty: '1' }))).toMatchObject({ code: 'BAD_TICK' });
    expect(await a.request(place(ex, { client_order_id: 'x2', side: 'SELL', source: 'WIND', price: '20.0000', qty: '1' }))).toMatchObject({ code: 'PRICE_OUT_OF_BAND' });
    expect(await a.request(place(ex, { client_order_id: 'x3', side: 'SELL', source: 'WIND', price: '0.2', qty: '1.0005' }))).toMatchObject({ code: 'INVALID_ORDER' });
    a.close();
  });

  it('cancel and amend answer ack with the new state; a CONSUMER may not sell', async () => {
    const a = await ex.login(ex.actors.alice);
    const o = await a.request(place(ex, { client_order_id: 'am-1', side: 'SELL', source: 'HYDRO', price: '0.9000', qty: '3.000' }));
    const am = await a.request({ type: 'amend', order_id: o.order_id, qty: '2.000' });
    expect(am).toMatchObject({ type: 'ack', op: 'amend', order_id: o.order_id, qty: '2.000', priority_kept: true });
    const cx = await a.request({ type: 'cancel', order_id: o.order_id });
    expect(cx).toMatchObject({ type: 'ack', op: 'cancel', order_id: o.order_id, status: 'CANCELLED', reason: 'USER' });
    expect(await a.request({ type: 'cancel', order_id: o.order_id })).toMatchObject({ type: 'reject', code: 'UNKNOWN_ORDER' });
    const c = await ex.login(ex.actors.consumer);
    expect(await c.request(place(ex, { client_order_id: 'nope', side: 'SELL', source: 'SOLAR', price: '0.1', qty: '1' }))).toMatchObject({ code: 'FORBIDDEN' });
    a.close();
    c.close();
  });
});

describe('who may do what', () => {
  it('an anonymous session gets market data but every trading message is UNAUTHORIZED', async () => {
    const c = await ex.anon();
    expect(await c.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval_id })).toMatchObject({ type: 'subscribed' });
    await c.next((m) => m.type === 'book' && m.snapshot === true);
    for (const m of [
      place(ex, { client_order_id: 'anon', side: 'BUY', price: '0.1', qty: '1' }),
      { type: 'cancel', order_id: 1 },
      { type: 'amend', order_id: 1, qty: '1' },
      { type: 'mass_cancel' },
      { type: 'balances' },
      { type: 'order_status', order_id: 1 },
    ]) {
      expect(await c.request(m)).toMatchObject({ type: 'reject', op: m.type, code: 'UNAUTHORIZED' });
    }
    c.close();
  });

  it('a trader cannot cancel, amend or look up another trader’s order (UNKNOWN_ORDER, as for a missing one) nor receive its stream', async () => {
    const alice = await ex.login(ex.actors.alice);
    const carol = await ex.login(ex.actors.carol);
    const o = await alice.request(place(ex, { client_order_id: 'mine', side: 'SELL', source: 'WIND', price: '0.7000', qty: '1.000' }));
    const missing = o.order_id + 1_000_000;
    for (const id of [o.order_id, missing]) {
      expect(await carol.request({ type: 'cancel', order_id: id })).toMatchObject({ code: 'UNKNOWN_ORDER', message: `no open order ${id} of yours` });
      expect(await carol.request({ type: 'amend', order_id: id, price: '0.1000' })).toMatchObject({ code: 'UNKNOWN_ORDER', message: `no open order ${id} of yours` });
      expect(await carol.request({ type: 'order_status', order_id: id })).toMatchObject({ code: 'UNKNOWN_ORDER', message: `no open order ${id} of yours` });
    }
    expect(await alice.request({ type: 'order_status', order_id: o.order_id })).toMatchObject({ type: 'order_state', status: 'ACTIVE', qty: '1.000' });
    expect(ex.core.engine(ex.zone_id).order(o.order_id)).toMatchObject({ remaining_wh: 1000, price_ticks: 7000 });
    // carol's mass cancel touches only carol's orders
    expect(await carol.request({ type: 'mass_cancel' })).toMatchObject({ type: 'ack', cancelled: 0 });
    expect(ex.core.engine(ex.zone_id).order(o.order_id)).toBeDefined();
    await carol.request({ type: 'ping' });
    expect(carol.inbox.some((m) => m.order_id === o.order_id && m.type !== 'reject')).toBe(false);
    await alice.request({ type: 'cancel', order_id: o.order_id });
    alice.close();
    carol.close();
  });
});

describe('cancel-on-disconnect', () => {
  it('orders of a session that opted in are cancelled when it disconnects; another session’s are kept', async () => {
    const bot = await ex.login(ex.actors.alice, { cancel_on_disconnect: true });
    const other = await ex.login(ex.actors.carol);
    const a = await bot.request(place(ex, { client_order_id: 'cod-1', side: 'SELL', source: 'SOLAR', price: '0.5000', qty: '1.000' }));
    const b = await bot.request(place(ex, { client_order_id: 'cod-2', side: 'SELL', source: 'SOLAR', price: '0.5100', qty: '1.000', interval_id: ex.interval2_id }));
    const k = await other.request(place(ex, { client_order_id: 'keep', side: 'SELL', source: 'WIND', price: '0.6000', qty: '1.000' }));
    const watcher = await ex.login(ex.actors.alice);
    bot.close();
    const c1 = await watcher.next((m) => m.type === 'order' && m.order_id === a.order_id && m.status === 'CANCELLED');
    await watcher.next((m) => m.type === 'order' && m.order_id === b.order_id && m.status === 'CANCELLED');
    expect(c1.reason).toBe('MASS_CANCEL');
    expect(ex.core.engine(ex.zone_id).order(k.order_id)).toBeDefined();
    await other.request({ type: 'cancel', order_id: k.order_id });
    watcher.close();
    other.close();
  });
});
