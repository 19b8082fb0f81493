// Acks, fills and balances are sent only after the ledger flush that holds what they report has
// committed, and one flush covers many orders. The ledger store here is a stand-in whose flush
// takes a snapshot of the ledger's holds and escrows when it is called and "commits" them later;
// every assertion is about what had committed when a message arrived (no timing assertions).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { globalTradeId } from '../../gateway/backend.js';
import { startExchange, type Exchange } from './harness.js';

let ex: Exchange;
const durableHolds = new Map<number, string>(); // order id → status when committed
const durableEscrows = new Set<number>();
let flushes = 0;
let flushCalls = 0;
/** While set, a flush "commits" only once this resolves (a test holds the ledger back). */
let gate: Promise<void> | null = null;

beforeAll(async () => {
  const store = {
    flush(): Promise<unknown> {
      if (ex === undefined) return Promise.resolve({}); // start-up, before the exchange is assigned
      flushCalls++;
      const holds = [...ex.ledger.holds.values()].map((h) => [h.order_id, h.status] as const);
      const escrows = [...ex.ledger.escrows.keys()];
      const held = gate ?? Promise.resolve();
      return new Promise((resolve) =>
        void held.then(() => setTimeout(() => {
          for (const [id, status] of holds) durableHolds.set(id, status);
          for (const t of escrows) durableEscrows.add(t);
          flushes++;
          resolve({});
        }, 15)),
      );
    },
  };
  ex = await startExchange({ extra: { ledgerStore: store } });
  await ex.deposit(ex.actors.bob, '1000.00');
});
afterAll(async () => ex?.stop());

const place = (o: Record<string, unknown>) => ({ type: 'place', zone_id: ex.zone_id, interval_id: ex.interval_id, order_type: 'LIMIT', ...o });

it('a BUY is acknowledged only once its hold (under the engine order id) is durable; a fill only once its escrow is', async () => {
  const buyer = await ex.login(ex.actors.bob);
  const seller = await ex.login(ex.actors.alice);
  const buy = await buyer.request(place({ client_order_id: 'd-b1', side: 'BUY', price: '0.2500', qty: '2.000' }));
  expect(buy).toMatchObject({ type: 'ack', status: 'ACTIVE' });
  expect(durableHolds.get(buy.order_id)).toBe('OPEN');

  const sell = await seller.request(place({ client_order_id: 'd-s1', side: 'SELL', source: 'WIND', price: '0.2000', qty: '0.500' }));
  expect(sell).toMatchObject({ type: 'ack', status: 'MATCHED' });
  const trade_id = sell.fills[0].trade_id as number;
  // the seller's ack reports a fill whose escrow is already durable
  expect(durableEscrows.has(globalTradeId(ex.zone_id, trade_id))).toBe(true);
  const fill = await buyer.next((m) => m.type === 'fill' && m.trade_id === trade_id);
  expect(fill).toMatchObject({ order_id: buy.order_id, qty: '0.500' });
  expect(durableEscrows.has(globalTradeId(ex.zone_id, trade_id))).toBe(true);
  const bal = await buyer.next((m) => m.type === 'balance' && m.escrow !== '0.00');
  const b = ex.ledger.balances(ex.actors.bob.user_id, 'EUR');
  expect(bal).toMatchObject({ escrow: `0.${(b.escrow_minor % 100n).toString().padStart(2, '0')}` });

  // a cancel's ack: the release is durable
  const cancel = await buyer.request({ type: 'cancel', order_id: buy.order_id });
  expect(cancel).toMatchObject({ type: 'ack', op: 'cancel', status: 'CANCELLED' });
  expect(durableHolds.get(buy.order_id)).toBe('CANCELLED');
  buyer.close();
  seller.close();
});

it('one flush covers many orders placed together', async () => {
  const buyer = await ex.login(ex.actors.bob);
  const before = flushCalls;
  const acks = await Promise.all(
    Array.from({ length: 40 }, (_, i) => buyer.request(place({ client_order_id: `d-many-${i}`, side: 'BUY', price: '0.0100', qty: '1.000' }))),
  );
  for (const a of acks) {
    expect(a).toMatchObject({ type: 'ack', status: 'ACTIVE' });
    expect(durableHolds.get(a.order_id)).toBe('OPEN');
  }
  // each order needs two durable points (its hold before submission, its binding before the ack);
  // coalesced, 40 orders take far fewer than 80 flushes
  expect(flushCalls - before).toBeLessThan(40);
  expect(flushes).toBeGreaterThan(0);
  buyer.close();
});

it('a place_batch of BUYs: every ack comes after its hold is durable, and the batch takes one flush before submission and one before the reply', async () => {
  const buyer = await ex.login(ex.actors.bob);
  const before = flushCalls;
  const r = await buyer.request({
    type: 'place_batch',
    orders: Array.from({ length: 20 }, (_, i) => ({ zone_id: ex.zone_id, interval_id: ex.interval_id, order_type: 'LIMIT', client_order_id: `d-batch-${i}`, side: 'BUY', price: '0.0100', qty: '1.000' })),
  });
  expect(r).toMatchObject({ type: 'batch', accepted: 20, rejected: 0 });
  for (const a of r.results) expect(durableHolds.get(a.order_id)).toBe('OPEN');
  expect(flushCalls - before).toBeLessThanOrEqual(2);
  await buyer.request({ type: 'mass_cancel' });
  buyer.close();
});

const until = async (cond: () => boolean, what: string): Promise<void> => {
  for (let t = 0; !cond(); t += 5) {
    if (t > 5000) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

it('a cancel-on-disconnect session that closes while its BUY holds become durable does not place them (single place and batch); the holds are released', async () => {
  const watcher = await ex.login(ex.actors.bob);
  await watcher.request({ type: 'mass_cancel' });
  const openHolds = () => [...ex.ledger.holds.values()].filter((h) => h.status === 'OPEN').length;
  const holdsBefore = openHolds();
  const heldBefore = ex.ledger.balances(ex.actors.bob.user_id, 'EUR').held_minor;
  const sessionsBefore = ex.gw.ws.sessions();
  const bot = await ex.login(ex.actors.bob, { cancel_on_disconnect: true });
  let release!: () => void;
  gate = new Promise<void>((r) => (release = r));
  try {
    const o = (client_order_id: string) => ({ zone_id: ex.zone_id, interval_id: ex.interval_id, order_type: 'LIMIT', client_order_id, side: 'BUY', price: '0.0200', qty: '1.000' });
    bot.send({ type: 'place', req_id: 'x1', ...o('d-gone-1') });
    bot.send({ type: 'place_batch', req_id: 'x2', orders: [o('d-gone-2'), o('d-gone-3')] });
    // the three holds are reserved and wait for their flush, which the gate holds back: close now
    await until(() => openHolds() === holdsBefore + 3, 'the holds are reserved');
    bot.close();
    await until(() => ex.gw.ws.sessions() === sessionsBefore, 'the server has closed the session');
  } finally {
    gate = null;
    release();
  }
  await until(() => openHolds() === holdsBefore, 'the holds are released');
  await watcher.request({ type: 'ping' });
  expect(watcher.inbox.filter((m) => m.type === 'order' && String(m.client_order_id).startsWith('d-gone-'))).toEqual([]);
  expect(bot.inbox.some((m) => m.type === 'ack' || m.type === 'batch')).toBe(false);
  expect(ex.ledger.balances(ex.actors.bob.user_id, 'EUR').held_minor).toBe(heldBefore);
  watcher.close();
});
