// One test (or a few) per rule of MARKET-RULES.md and issue 3, each named for its rule.
import { describe, expect, it } from 'vitest';
import { ZoneEngine } from '../../engine/index.js';
import type { PlaceCommand } from '../../engine/index.js';
import { bookState, brief, Driver, fills, IV, IV2, rejection, types, ZONE } from './helpers.js';

describe('validation of a new order', () => {
  it('INVALID_ORDER: missing or empty ids, unknown side/type/STP, SELL with ANY, bad quantity, missing or non-integer price', () => {
    const d = new Driver();
    const bad: Partial<PlaceCommand>[] = [
      { client_order_id: '' },
      { client_order_id: undefined },
      { order_id: 0 },
      { order_id: 1.5 },
      { user_id: -1 },
      { zone_id: undefined },
      { side: 'UP' as never },
      { order_type: 'STOP' as never },
      { stp: 'NONE' as never },
      { source: 'COAL' as never },
      { side: 'SELL', source: 'ANY' },
      { qty_wh: 0 },
      { qty_wh: -5 },
      { qty_wh: 2.5 },
      { price_ticks: undefined },
      { price_ticks: 10.5 },
      { order_type: 'MARKET', price_ticks: undefined },
      { client_order_id: 'x'.repeat(65) },
    ];
    for (const b of bad) expect(rejection(d.place({ user_id: 1, ...b })), JSON.stringify(b)).toBe('INVALID_ORDER');
    expect(d.e.openOrderCount).toBe(0);
  });

  it('checks run in the documented order and the first failure is the answer', () => {
    const d = new Driver({ config: { price_step_ticks: 5, lot_wh: 10, band_min_ticks: -100, band_max_ticks: 100, min_qty_wh: 10, max_qty_wh: 100, max_open_orders_per_user: 1 } });
    d.place({ user_id: 1, price_ticks: 50, qty_wh: 10, client_order_id: 'dup' });
    d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 1, interval_id: IV, limit_wh: 5 });
    // each row fails its own check and every later one
    const cases: [Partial<PlaceCommand>, string][] = [
      [{ zone_id: 2, interval_id: 999, price_ticks: 1001 }, 'UNKNOWN_ZONE'],
      [{ interval_id: 999, price_ticks: 1001 }, 'UNKNOWN_INTERVAL'],
      [{ client_order_id: 'dup', price_ticks: 1001, qty_wh: 3 }, 'DUPLICATE_CLIENT_ORDER_ID'],
      [{ price_ticks: 101, qty_wh: 3 }, 'PRICE_OUT_OF_BAND'],
      [{ price_ticks: 51, qty_wh: 3 }, 'BAD_TICK'],
      [{ price_ticks: 50, qty_wh: 5 }, 'QTY_OUT_OF_RANGE'],
      [{ price_ticks: 50, qty_wh: 15 }, 'BAD_LOT'],
      [{ side: 'SELL', source: 'SOLAR', price_ticks: 50, qty_wh: 20 }, 'TOO_MANY_OPEN_ORDERS'],
      [{ side: 'SELL', source: 'SOLAR', order_type: 'IOC', price_ticks: 50, qty_wh: 20 }, 'SELLER_CAPACITY_EXCEEDED'],
    ];
    for (const [c, code] of cases) expect(rejection(d.place({ user_id: 1, ...c })), code).toBe(code);
    // a halted zone answers ZONE_HALTED before INTERVAL_CLOSED, even for a closed interval
    d.run({ type: 'GATE_CLOSE', ts_ms: d.ts, interval_id: IV2 });
    expect(rejection(d.place({ user_id: 2, interval_id: IV2 }))).toBe('INTERVAL_CLOSED');
    d.run({ type: 'HALT', ts_ms: d.ts, policy: 'KEEP_RESTING' });
    expect(rejection(d.place({ user_id: 2, interval_id: IV2 }))).toBe('ZONE_HALTED');
    expect(rejection(d.place({ user_id: 2, interval_id: 999 }))).toBe('UNKNOWN_INTERVAL');
  });

  it('UNKNOWN_ZONE before the zone is configured or for another zone', () => {
    const e = new ZoneEngine(ZONE);
    const base = { type: 'PLACE', ts_ms: 1, order_id: 1, user_id: 1, client_order_id: 'a', zone_id: ZONE, interval_id: IV, side: 'BUY', source: 'ANY', order_type: 'LIMIT', price_ticks: 1, qty_wh: 1 } as const;
    expect(rejection(e.apply(base))).toBe('UNKNOWN_ZONE');
    const d = new Driver();
    expect(rejection(d.place({ user_id: 1, zone_id: 2 }))).toBe('UNKNOWN_ZONE');
  });

  it('band and size bounds are inclusive; negative prices are allowed where the band allows them', () => {
    const d = new Driver({ config: { band_min_ticks: -50, band_max_ticks: 50, min_qty_wh: 10, max_qty_wh: 20 } });
    expect(types(d.buy(1, -50, 10))).toContain('ACCEPTED');
    expect(types(d.buy(1, 50, 20))).toContain('ACCEPTED');
    expect(rejection(d.buy(1, -51, 10))).toBe('PRICE_OUT_OF_BAND');
    expect(rejection(d.buy(1, 51, 10))).toBe('PRICE_OUT_OF_BAND');
    expect(rejection(d.buy(1, 0, 9))).toBe('QTY_OUT_OF_RANGE');
    expect(rejection(d.buy(1, 0, 21))).toBe('QTY_OUT_OF_RANGE');
  });

  it('the tick grid is anchored at 0 (-10 is on a tick of 5) and lot means qty % lot === 0', () => {
    const d = new Driver({ config: { price_step_ticks: 5, lot_wh: 100 } });
    expect(types(d.buy(1, -10, 300))).toContain('ACCEPTED');
    expect(rejection(d.buy(1, -7, 300))).toBe('BAD_TICK');
    expect(rejection(d.buy(1, 10, 250))).toBe('BAD_LOT');
  });

  it("a MARKET order's protection price passes the band and tick checks like a limit price", () => {
    const d = new Driver({ config: { price_step_ticks: 5, band_max_ticks: 100 } });
    expect(rejection(d.buy(1, 105, 1, { order_type: 'MARKET' }))).toBe('PRICE_OUT_OF_BAND');
    expect(rejection(d.buy(1, 12, 1, { order_type: 'MARKET' }))).toBe('BAD_TICK');
  });

  it('max open orders per user counts the whole zone (all intervals) and only for types that can rest', () => {
    const d = new Driver({ config: { max_open_orders_per_user: 2 } });
    d.buy(1, 10, 1, { interval_id: IV });
    d.buy(1, 10, 1, { interval_id: IV2 });
    expect(rejection(d.buy(1, 10, 1, { interval_id: IV }))).toBe('TOO_MANY_OPEN_ORDERS');
    expect(rejection(d.buy(1, 10, 1, { order_type: 'POST_ONLY' }))).toBe('TOO_MANY_OPEN_ORDERS');
    expect(brief(d.buy(1, 10, 1, { order_type: 'IOC', order_id: 50 }))).toEqual([['ACCEPTED', 50], ['CANCELLED', 50, 'UNFILLED', 1]]);
    expect(types(d.buy(2, 10, 1))).toContain('ACCEPTED'); // another user is not affected
  });

  it('a client order id is unique per user among open orders, reusable once closed; IOC reusing an open id is rejected', () => {
    const d = new Driver();
    d.buy(1, 10, 1, { order_id: 1, client_order_id: 'k' });
    expect(rejection(d.buy(1, 10, 1, { client_order_id: 'k' }))).toBe('DUPLICATE_CLIENT_ORDER_ID');
    expect(rejection(d.buy(1, 10, 1, { client_order_id: 'k', order_type: 'IOC' }))).toBe('DUPLICATE_CLIENT_ORDER_ID');
    expect(types(d.buy(2, 10, 1, { client_order_id: 'k' }))).toContain('ACCEPTED'); // other user
    expect(d.e.orderIdByClientOrderId(1, 'k')).toBe(1);
    d.cancel(1, 1);
    expect(d.e.orderIdByClientOrderId(1, 'k')).toBeUndefined();
    expect(types(d.buy(1, 10, 1, { client_order_id: 'k' }))).toContain('ACCEPTED');
  });

  it('rejected orders consume no sequence number', () => {
    const d = new Driver();
    const a = d.buy(1, 10, 1)[0];
    d.buy(1, 5000, 1); // rejected
    const b = d.buy(1, 10, 1)[0];
    expect(a.type === 'ACCEPTED' && b.type === 'ACCEPTED' && b.seq - a.seq).toBe(1);
  });

  it('an order id that is already open is INVALID_ORDER (ids are chosen by the caller)', () => {
    const d = new Driver();
    d.buy(1, 10, 1, { order_id: 7 });
    expect(rejection(d.buy(2, 10, 1, { order_id: 7 }))).toBe('INVALID_ORDER');
  });
});

describe('matching: price-time priority', () => {
  it('takes the best price first, then the earliest sequence, and fills at the resting price', () => {
    const d = new Driver();
    d.sell(1, 101, 5, { order_id: 1 });
    d.sell(2, 100, 5, { order_id: 2 });
    d.sell(3, 100, 5, { order_id: 3 });
    const ev = d.buy(9, 105, 12, { order_id: 4 });
    expect(brief(ev)).toEqual([
      ['ACCEPTED', 4],
      ['FILL', 2, 4, 100, 5],
      ['FILL', 3, 4, 100, 5],
      ['FILL', 1, 4, 101, 2],
    ]);
    const f = fills(ev);
    expect(f[2]).toMatchObject({ maker_user_id: 1, taker_user_id: 9, maker_remaining_wh: 3, taker_remaining_wh: 0, source: 'SOLAR', taker_side: 'BUY' });
  });

  it('a partial fill keeps priority', () => {
    const d = new Driver();
    d.sell(1, 100, 10, { order_id: 1 });
    d.sell(2, 100, 10, { order_id: 2 });
    d.buy(9, 100, 4);
    expect(fills(d.buy(9, 100, 8)).map((f) => [f.maker_order_id, f.qty_wh])).toEqual([[1, 6], [2, 2]]);
  });

  it('a LIMIT remainder rests at its price after taking what it can', () => {
    const d = new Driver();
    d.sell(1, 100, 5);
    d.buy(2, 102, 8, { order_id: 10 });
    expect(d.e.order(10)).toMatchObject({ remaining_wh: 3, filled_wh: 5, price_ticks: 102 });
    expect(d.e.l2(IV).bids).toEqual([{ price_ticks: 102, qty_wh: 3, order_count: 1 }]);
  });
});

describe('matching: source constraint', () => {
  it('a BUY for X matches only SELLs of X', () => {
    const d = new Driver();
    d.sell(1, 90, 5, { source: 'WIND' });
    d.sell(1, 100, 5, { source: 'SOLAR', order_id: 20 });
    const f = fills(d.buy(2, 100, 10, { source: 'SOLAR' }));
    expect(f.map((x) => [x.maker_order_id, x.source])).toEqual([[20, 'SOLAR']]);
  });

  it('a BUY for ANY takes the best head across the four source sub-books, price then time', () => {
    const d = new Driver();
    d.sell(1, 100, 1, { source: 'HYDRO', order_id: 1 });
    d.sell(1, 99, 1, { source: 'BATTERY', order_id: 2 });
    d.sell(1, 100, 1, { source: 'WIND', order_id: 3 });
    d.sell(1, 100, 1, { source: 'SOLAR', order_id: 4 });
    expect(fills(d.buy(2, 100, 4)).map((x) => [x.maker_order_id, x.source])).toEqual([[2, 'BATTERY'], [1, 'HYDRO'], [3, 'WIND'], [4, 'SOLAR']]);
  });

  it('a SELL of X matches BUYs for X and BUYs for ANY in price-time priority; others stay', () => {
    const d = new Driver();
    d.buy(1, 100, 1, { source: 'SOLAR', order_id: 1 });
    d.buy(1, 100, 1, { source: 'ANY', order_id: 2 });
    d.buy(1, 101, 1, { source: 'WIND', order_id: 3 });
    d.buy(1, 100, 1, { source: 'SOLAR', order_id: 4 });
    expect(fills(d.sell(2, 100, 5, { source: 'SOLAR' })).map((x) => x.maker_order_id)).toEqual([1, 2, 4]);
    expect(d.e.order(3)?.remaining_wh).toBe(1);
  });

  it('a book may be crossed between incompatible sources', () => {
    const d = new Driver();
    d.buy(1, 200, 1, { source: 'WIND' });
    expect(fills(d.sell(2, 100, 1, { source: 'SOLAR' }))).toEqual([]);
    expect(d.e.l2(IV).bids[0].price_ticks).toBeGreaterThan(d.e.l2(IV).asks[0].price_ticks);
  });
});

describe('matching: grid capacity', () => {
  it('matched Wh never exceed the capacity: the fill is trimmed and the LIMIT remainder rests even if it crosses', () => {
    const d = new Driver({ capacity_wh: 7 });
    d.sell(1, 100, 10, { order_id: 1 });
    const ev = d.buy(2, 100, 10, { order_id: 2 });
    expect(brief(ev)).toEqual([['ACCEPTED', 2], ['FILL', 1, 2, 100, 7]]);
    expect(d.e.interval(IV)).toMatchObject({ matched_wh: 7, capacity_wh: 7 });
    expect(d.e.order(2)?.remaining_wh).toBe(3);
    expect(d.e.order(1)?.remaining_wh).toBe(3);
    expect(fills(d.buy(3, 100, 1))).toEqual([]);
  });

  it('an IOC or MARKET remainder stopped by capacity is cancelled UNFILLED', () => {
    const d = new Driver({ capacity_wh: 4 });
    d.sell(1, 100, 10, { order_id: 1 });
    expect(brief(d.buy(2, 100, 6, { order_type: 'IOC', order_id: 5 }))).toEqual([['ACCEPTED', 5], ['FILL', 1, 5, 100, 4], ['CANCELLED', 5, 'UNFILLED', 2]]);
    expect(brief(d.buy(2, 100, 6, { order_type: 'MARKET', order_id: 6 }))).toEqual([['ACCEPTED', 6], ['CANCELLED', 6, 'UNFILLED', 6]]);
  });

  it('a book with no capacity left stops before self-trade prevention is considered', () => {
    const d = new Driver({ capacity_wh: 0 });
    d.sell(1, 100, 5, { order_id: 1 });
    const ev = d.buy(1, 100, 5, { order_id: 2, stp: 'CANCEL_BOTH' });
    expect(brief(ev)).toEqual([['ACCEPTED', 2]]);
    expect(d.e.order(1)).toBeDefined();
    expect(d.e.order(2)).toBeDefined();
  });
});

describe('self-trade prevention', () => {
  it('CANCEL_NEWEST (the default) cancels the incoming remainder; a LIMIT remainder does not rest; fills before stand', () => {
    const d = new Driver();
    d.sell(2, 100, 3, { order_id: 1 });
    d.sell(1, 101, 5, { order_id: 2 });
    d.sell(3, 102, 5, { order_id: 3 });
    const ev = d.buy(1, 105, 10, { order_id: 4 });
    expect(brief(ev)).toEqual([['ACCEPTED', 4], ['FILL', 1, 4, 100, 3], ['CANCELLED', 4, 'SELF_TRADE', 7]]);
    expect(d.e.order(4)).toBeUndefined();
    expect(d.e.order(2)?.remaining_wh).toBe(5);
  });

  it('CANCEL_OLDEST cancels own resting orders one by one and matching goes on', () => {
    const d = new Driver();
    d.sell(1, 100, 3, { order_id: 1 });
    d.sell(1, 100, 3, { order_id: 2 });
    d.sell(2, 101, 5, { order_id: 3 });
    const ev = d.buy(1, 105, 4, { order_id: 4, stp: 'CANCEL_OLDEST' });
    expect(brief(ev)).toEqual([['ACCEPTED', 4], ['CANCELLED', 1, 'SELF_TRADE', 3], ['CANCELLED', 2, 'SELF_TRADE', 3], ['FILL', 3, 4, 101, 4]]);
  });

  it('CANCEL_BOTH cancels the resting order and the incoming remainder (resting first)', () => {
    const d = new Driver();
    d.sell(1, 100, 3, { order_id: 1 });
    d.sell(1, 100, 3, { order_id: 2 });
    const ev = d.buy(1, 105, 4, { order_id: 4, stp: 'CANCEL_BOTH' });
    expect(brief(ev)).toEqual([['ACCEPTED', 4], ['CANCELLED', 1, 'SELF_TRADE', 3], ['CANCELLED', 4, 'SELF_TRADE', 4]]);
    expect(d.e.order(2)).toBeDefined();
  });

  it('looks only at the next order in priority: an own order behind a foreign one does not stop the fill', () => {
    const d = new Driver();
    d.sell(2, 100, 3, { order_id: 1 });
    d.sell(1, 101, 3, { order_id: 2 });
    expect(brief(d.buy(1, 100, 3, { order_id: 3 }))).toEqual([['ACCEPTED', 3], ['FILL', 1, 3, 100, 3]]);
  });

  it('no trade ever has the same user on both sides, for every STP mode and order type', () => {
    for (const stp of ['CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'] as const) {
      for (const order_type of ['LIMIT', 'MARKET', 'IOC', 'FOK'] as const) {
        const d = new Driver();
        d.sell(1, 100, 5);
        d.sell(2, 100, 5);
        for (const f of fills(d.buy(1, 100, 5, { stp, order_type }))) expect(f.maker_user_id).not.toBe(f.taker_user_id);
      }
    }
  });
});

describe('order types', () => {
  it('IOC and MARKET remainders are cancelled UNFILLED whatever stopped them (liquidity, price limit)', () => {
    const d = new Driver();
    d.sell(1, 100, 2, { order_id: 1 });
    d.sell(1, 110, 2, { order_id: 2 });
    expect(brief(d.buy(2, 105, 5, { order_type: 'IOC', order_id: 10 }))).toEqual([['ACCEPTED', 10], ['FILL', 1, 10, 100, 2], ['CANCELLED', 10, 'UNFILLED', 3]]);
    // MARKET stops at its protection price
    expect(brief(d.buy(2, 109, 5, { order_type: 'MARKET', order_id: 11 }))).toEqual([['ACCEPTED', 11], ['CANCELLED', 11, 'UNFILLED', 5]]);
    expect(brief(d.buy(2, 110, 5, { order_type: 'MARKET', order_id: 12 }))).toEqual([['ACCEPTED', 12], ['FILL', 2, 12, 110, 2], ['CANCELLED', 12, 'UNFILLED', 3]]);
    expect(d.e.openOrderCount).toBe(0);
  });

  it('FOK fills the whole quantity or is rejected FOK_NOT_FILLABLE and nothing changes', () => {
    const d = new Driver();
    d.sell(1, 100, 3, { order_id: 1 });
    d.sell(1, 101, 3, { order_id: 2 });
    const before = bookState(d.e);
    expect(rejection(d.buy(2, 101, 7, { order_type: 'FOK' }))).toBe('FOK_NOT_FILLABLE');
    expect(rejection(d.buy(2, 100, 4, { order_type: 'FOK' }))).toBe('FOK_NOT_FILLABLE');
    expect(bookState(d.e)).toEqual(before);
    const ev = d.buy(2, 101, 6, { order_type: 'FOK', order_id: 50 });
    expect(brief(ev)).toEqual([['ACCEPTED', 50], ['FILL', 1, 50, 100, 3], ['FILL', 2, 50, 101, 3]]);
  });

  it('FOK dry run counts capacity', () => {
    const d = new Driver({ capacity_wh: 5 });
    d.sell(1, 100, 10);
    expect(rejection(d.buy(2, 100, 6, { order_type: 'FOK' }))).toBe('FOK_NOT_FILLABLE');
    expect(types(d.buy(2, 100, 5, { order_type: 'FOK' }))).toContain('FILL');
  });

  it('FOK dry run counts self-trade prevention: CANCEL_NEWEST blocks, CANCEL_OLDEST cancels then happen too', () => {
    const d = new Driver();
    d.sell(1, 100, 3, { order_id: 1 });
    d.sell(2, 101, 3, { order_id: 2 });
    expect(rejection(d.buy(1, 101, 3, { order_type: 'FOK' }))).toBe('FOK_NOT_FILLABLE');
    expect(rejection(d.buy(1, 101, 4, { order_type: 'FOK', stp: 'CANCEL_OLDEST' }))).toBe('FOK_NOT_FILLABLE');
    expect(d.e.order(1)).toBeDefined(); // nothing changed
    const ev = d.buy(1, 101, 3, { order_type: 'FOK', stp: 'CANCEL_OLDEST', order_id: 9 });
    expect(brief(ev)).toEqual([['ACCEPTED', 9], ['CANCELLED', 1, 'SELF_TRADE', 3], ['FILL', 2, 9, 101, 3]]);
  });

  it('POST_ONLY is rejected if any compatible resting order crosses, whoever owns it and whatever the capacity', () => {
    const d = new Driver({ capacity_wh: 0 });
    d.sell(1, 100, 3);
    expect(rejection(d.buy(1, 100, 1, { order_type: 'POST_ONLY' }))).toBe('POST_ONLY_WOULD_MATCH');
    expect(rejection(d.buy(2, 101, 1, { order_type: 'POST_ONLY' }))).toBe('POST_ONLY_WOULD_MATCH');
    expect(types(d.buy(2, 99, 1, { order_type: 'POST_ONLY' }))).toContain('ACCEPTED');
    // an incompatible source does not count
    expect(types(d.buy(2, 150, 1, { order_type: 'POST_ONLY', source: 'WIND' }))).toContain('ACCEPTED');
  });

  it('order of events within one command: acceptance, STP cancels and fills as they happen, own cancel, then book levels', () => {
    const d = new Driver();
    d.sell(1, 100, 2, { order_id: 1 });
    d.sell(2, 100, 2, { order_id: 2 });
    d.sell(1, 101, 2, { order_id: 3 });
    const ev = d.buy(1, 101, 10, { order_id: 4, stp: 'CANCEL_OLDEST', order_type: 'IOC' });
    expect(types(ev)).toEqual(['ACCEPTED', 'CANCELLED', 'FILL', 'CANCELLED', 'CANCELLED', 'BOOK_LEVEL', 'BOOK_LEVEL']);
    expect(ev.map((e) => e.event_seq)).toEqual(ev.map((_, i) => ev[0].event_seq + i));
  });
});

describe('good till a given time', () => {
  it('expires when a command ts reaches expire_at_ms, before that command acts, and on EXPIRE_DUE', () => {
    const d = new Driver();
    d.sell(1, 100, 5, { order_id: 1, expire_at_ms: 2000 });
    d.sell(1, 101, 5, { order_id: 2, expire_at_ms: 3000 });
    d.ts = 1999;
    expect(d.e.order(1)).toBeDefined();
    d.ts = 2000;
    const ev = d.buy(2, 101, 1, { order_id: 3 });
    expect(brief(ev)).toEqual([['EXPIRED', 1, 'GOOD_TILL_TIME', 5], ['ACCEPTED', 3], ['FILL', 2, 3, 101, 1]]);
    expect(brief(d.run({ type: 'EXPIRE_DUE', ts_ms: 3000 }))).toEqual([['EXPIRED', 2, 'GOOD_TILL_TIME', 4]]);
    expect(d.e.openOrderCount).toBe(0);
  });

  it('expire_at_ms not after the command ts, or on a type that cannot rest, is INVALID_ORDER', () => {
    const d = new Driver();
    expect(rejection(d.buy(1, 100, 1, { expire_at_ms: d.ts }))).toBe('INVALID_ORDER');
    expect(rejection(d.buy(1, 100, 1, { expire_at_ms: d.ts + 10, order_type: 'IOC' }))).toBe('INVALID_ORDER');
  });

  it('a cancelled good-till-time order does not expire later', () => {
    const d = new Driver();
    d.sell(1, 100, 5, { order_id: 1, expire_at_ms: 2000 });
    d.cancel(1, 1);
    expect(d.run({ type: 'EXPIRE_DUE', ts_ms: 5000 })).toEqual([]);
  });
});

describe('seller feasibility', () => {
  it('a SELL is rejected when open sell + sold (as maker or taker) + the new quantity exceed the limit', () => {
    const d = new Driver();
    d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 1, interval_id: IV, limit_wh: 10 });
    d.buy(2, 100, 3);
    d.sell(1, 100, 3, { order_type: 'IOC' }); // sold 3 as taker
    d.sell(1, 105, 4, { order_id: 20 }); // open 4
    d.buy(3, 105, 2); // sold 2 more as maker: sold 5, open 2
    expect(d.e.seller(1, IV)).toMatchObject({ sold_wh: 5, open_sell_wh: 2, limit_wh: 10 });
    expect(rejection(d.sell(1, 110, 4))).toBe('SELLER_CAPACITY_EXCEEDED');
    expect(types(d.sell(1, 110, 3))).toContain('ACCEPTED');
    // other intervals and sellers without a limit are free
    expect(types(d.sell(1, 110, 50, { interval_id: IV2 }))).toContain('ACCEPTED');
    expect(types(d.sell(4, 110, 50))).toContain('ACCEPTED');
  });

  it('an amend is checked only when it increases the quantity, by the increase', () => {
    const d = new Driver();
    d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 1, interval_id: IV, limit_wh: 10 });
    d.sell(1, 100, 8, { order_id: 1 });
    expect(rejection(d.amend(1, 1, { qty_wh: 11 }))).toBe('SELLER_CAPACITY_EXCEEDED');
    expect(types(d.amend(1, 1, { qty_wh: 10 }))).toContain('AMENDED');
    d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 1, interval_id: IV, limit_wh: 5 });
    expect(types(d.amend(1, 1, { qty_wh: 9 }))).toContain('AMENDED'); // a decrease is not checked
  });
});

describe('cancel and amend', () => {
  it("a finished order's id, or another user's, is UNKNOWN_ORDER", () => {
    const d = new Driver();
    d.sell(1, 100, 5, { order_id: 1 });
    expect(rejection(d.cancel(1, 2))).toBe('UNKNOWN_ORDER');
    expect(rejection(d.amend(1, 2, { qty_wh: 1 }))).toBe('UNKNOWN_ORDER');
    expect(brief(d.cancel(1, 1))).toEqual([['CANCELLED', 1, 'USER', 5]]);
    expect(rejection(d.cancel(1, 1))).toBe('UNKNOWN_ORDER');
    expect(rejection(d.cancel(99, 1))).toBe('UNKNOWN_ORDER');
  });

  it('a quantity decrease keeps priority; a price change or a quantity increase loses it (the event says so)', () => {
    const d = new Driver();
    d.sell(1, 100, 5, { order_id: 1 });
    d.sell(2, 100, 5, { order_id: 2 });
    d.sell(3, 100, 5, { order_id: 3 });
    const kept = d.amend(1, 1, { qty_wh: 4 });
    expect(kept[0]).toMatchObject({ type: 'AMENDED', priority_kept: true, qty_wh: 4, remaining_wh: 4 });
    const lost = d.amend(2, 2, { qty_wh: 6 });
    expect(lost[0]).toMatchObject({ type: 'AMENDED', priority_kept: false });
    expect(d.e.l3(IV).asks.map((o) => o.order_id)).toEqual([1, 3, 2]);
    d.amend(1, 1, { price_ticks: 101 });
    d.amend(1, 1, { price_ticks: 100 });
    expect(d.e.l3(IV).asks.map((o) => o.order_id)).toEqual([3, 2, 1]);
  });

  it("an amend's new quantity is the total, filled part included; a total <= filled cancels the remainder (AMEND)", () => {
    const d = new Driver();
    d.sell(1, 100, 10, { order_id: 1 });
    d.buy(2, 100, 4);
    const ev = d.amend(1, 1, { qty_wh: 6 });
    expect(ev[0]).toMatchObject({ type: 'AMENDED', qty_wh: 6, remaining_wh: 2, filled_wh: 4, priority_kept: true });
    expect(brief(d.amend(1, 1, { qty_wh: 4, price_ticks: 5000 }))).toEqual([['CANCELLED', 1, 'AMEND', 2]]);
  });

  it('an amend that loses priority matches again as an incoming order of its own type', () => {
    const d = new Driver();
    d.buy(2, 100, 3, { order_id: 1 });
    d.sell(1, 105, 5, { order_id: 2 });
    const ev = d.amend(2, 1, { price_ticks: 99 });
    expect(brief(ev)).toEqual([['AMENDED', 2, false], ['FILL', 1, 2, 100, 3]]);
    expect(d.e.order(2)).toMatchObject({ remaining_wh: 2, price_ticks: 99 });
  });

  it('an amended POST_ONLY that would cross is rejected and left unchanged', () => {
    const d = new Driver();
    d.buy(2, 100, 3);
    d.sell(1, 105, 5, { order_id: 2, order_type: 'POST_ONLY' });
    const before = bookState(d.e);
    expect(rejection(d.amend(2, 1, { price_ticks: 100 }))).toBe('POST_ONLY_WOULD_MATCH');
    expect(bookState(d.e)).toEqual(before);
  });

  it('amend checks run in order: INVALID_ORDER, UNKNOWN_ORDER, ZONE_HALTED, band, tick, size, lot', () => {
    const d = new Driver({ config: { price_step_ticks: 5, lot_wh: 10, min_qty_wh: 10, max_qty_wh: 100 } });
    d.sell(1, 100, 20, { order_id: 1 });
    expect(rejection(d.amend(1, 1, {}))).toBe('INVALID_ORDER');
    expect(rejection(d.amend(2, 1, { price_ticks: 5001 }))).toBe('UNKNOWN_ORDER');
    expect(rejection(d.amend(1, 1, { price_ticks: 5001, qty_wh: 15 }))).toBe('PRICE_OUT_OF_BAND');
    expect(rejection(d.amend(1, 1, { price_ticks: 101, qty_wh: 5 }))).toBe('BAD_TICK');
    expect(rejection(d.amend(1, 1, { qty_wh: 105 }))).toBe('QTY_OUT_OF_RANGE');
    expect(rejection(d.amend(1, 1, { qty_wh: 15 }))).toBe('BAD_LOT');
    d.run({ type: 'HALT', ts_ms: d.ts, policy: 'KEEP_RESTING' });
    expect(rejection(d.amend(1, 1, { qty_wh: 10 }))).toBe('ZONE_HALTED'); // reductions too
  });
});

describe('mass cancel, halt, gate closure', () => {
  it('mass cancel by user cancels in sequence order with reason MASS_CANCEL, across intervals', () => {
    const d = new Driver();
    d.buy(1, 10, 1, { order_id: 1 });
    d.buy(2, 10, 1, { order_id: 2 });
    d.buy(1, 11, 1, { order_id: 3, interval_id: IV2 });
    d.buy(1, 12, 1, { order_id: 4 });
    d.amend(1, 1, { price_ticks: 13 }); // new seq: now last
    const ev = d.run({ type: 'MASS_CANCEL', ts_ms: d.ts, scope: 'USER', user_id: 1 });
    expect(brief(ev)).toEqual([['CANCELLED', 3, 'MASS_CANCEL', 1], ['CANCELLED', 4, 'MASS_CANCEL', 1], ['CANCELLED', 1, 'MASS_CANCEL', 1]]);
    expect(d.e.openOrderCount).toBe(1);
  });

  it('mass cancel by user and zone, and by zone and interval', () => {
    const d = new Driver();
    d.buy(1, 10, 1, { order_id: 1 });
    d.buy(2, 10, 1, { order_id: 2 });
    d.buy(2, 10, 1, { order_id: 3, interval_id: IV2 });
    expect(rejection(d.run({ type: 'MASS_CANCEL', ts_ms: d.ts, scope: 'USER_ZONE', user_id: 1, zone_id: 9 }))).toBe('UNKNOWN_ZONE');
    expect(brief(d.run({ type: 'MASS_CANCEL', ts_ms: d.ts, scope: 'USER_ZONE', user_id: 1, zone_id: ZONE }))).toEqual([['CANCELLED', 1, 'MASS_CANCEL', 1]]);
    expect(brief(d.run({ type: 'MASS_CANCEL', ts_ms: d.ts, scope: 'INTERVAL', zone_id: ZONE, interval_id: IV }))).toEqual([['CANCELLED', 2, 'MASS_CANCEL', 1]]);
    expect(d.e.order(3)).toBeDefined();
  });

  it('HALT CANCEL_RESTING cancels every open order in sequence order (HALT); KEEP_RESTING keeps them', () => {
    const d = new Driver();
    d.buy(1, 10, 1, { order_id: 1, interval_id: IV2 });
    d.sell(2, 20, 1, { order_id: 2 });
    expect(brief(d.run({ type: 'HALT', ts_ms: d.ts, policy: 'KEEP_RESTING' }))).toEqual([['ZONE_STATUS']]);
    expect(d.e.openOrderCount).toBe(2);
    const ev = d.run({ type: 'HALT', ts_ms: d.ts, policy: 'CANCEL_RESTING' });
    expect(brief(ev)).toEqual([['ZONE_STATUS'], ['CANCELLED', 1, 'HALT', 1], ['CANCELLED', 2, 'HALT', 1]]);
  });

  it('HALTED and MAINTENANCE reject new orders and amends but accept cancels and mass cancels; RESUME reopens', () => {
    for (const cmd of [{ type: 'HALT', policy: 'KEEP_RESTING' }, { type: 'MAINTENANCE' }] as const) {
      const d = new Driver();
      d.buy(1, 10, 2, { order_id: 1 });
      d.buy(1, 10, 2, { order_id: 2 });
      d.run({ ...cmd, ts_ms: d.ts });
      expect(rejection(d.buy(1, 10, 1))).toBe('ZONE_HALTED');
      expect(rejection(d.amend(1, 1, { qty_wh: 1 }))).toBe('ZONE_HALTED');
      expect(brief(d.cancel(1, 1))).toEqual([['CANCELLED', 1, 'USER', 2]]);
      expect(brief(d.run({ type: 'MASS_CANCEL', ts_ms: d.ts, scope: 'USER', user_id: 1 }))).toEqual([['CANCELLED', 2, 'MASS_CANCEL', 2]]);
      d.run({ type: 'RESUME', ts_ms: d.ts });
      expect(types(d.buy(1, 10, 1))).toContain('ACCEPTED');
    }
  });

  it('GATE_CLOSE expires every open order of the book with its remaining quantity, is final, and works when halted', () => {
    const d = new Driver();
    d.sell(1, 100, 10, { order_id: 1 });
    d.buy(2, 100, 4);
    d.buy(3, 90, 5, { order_id: 3 });
    d.buy(3, 90, 5, { order_id: 4, interval_id: IV2 });
    d.run({ type: 'HALT', ts_ms: d.ts, policy: 'KEEP_RESTING' });
    const ev = d.run({ type: 'GATE_CLOSE', ts_ms: d.ts, interval_id: IV });
    expect(brief(ev)).toEqual([['GATE_CLOSED'], ['EXPIRED', 1, 'GATE_CLOSE', 6], ['EXPIRED', 3, 'GATE_CLOSE', 5]]);
    expect(d.e.order(4)).toBeDefined();
    d.run({ type: 'RESUME', ts_ms: d.ts });
    expect(rejection(d.buy(3, 90, 5))).toBe('INTERVAL_CLOSED');
    expect(rejection(d.run({ type: 'GATE_CLOSE', ts_ms: d.ts, interval_id: IV }))).toBe('INTERVAL_CLOSED');
    expect(d.e.l2(IV)).toEqual({ interval_id: IV, bids: [], asks: [] });
  });

  it('GATE_CLOSE retires the book: its sellers leave the state (a limit for it is INTERVAL_CLOSED), and a zone running interval after interval does not grow', () => {
    const d = new Driver({ intervals: [] });
    const sizes: number[] = [];
    for (let k = 0; k < 60; k++) {
      const iv = 1000 + k;
      d.run({ type: 'OPEN_INTERVAL', ts_ms: d.ts, interval_id: iv, capacity_wh: 1e12 });
      d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 1, interval_id: iv, limit_wh: 1000 });
      for (let u = 1; u <= 20; u++) {
        d.sell(u, 100 + (u % 7), 5, { interval_id: iv });
        d.buy(100 + u, 100 + (u % 5), 3, { interval_id: iv, source: u % 2 === 0 ? 'SOLAR' : 'ANY' });
      }
      expect(d.e.seller(3, iv)).toMatchObject({ interval_id: iv });
      const ev = d.run({ type: 'GATE_CLOSE', ts_ms: d.ts, interval_id: iv });
      expect(types(ev)[0]).toBe('GATE_CLOSED');
      expect(d.e.seller(3, iv)).toBeUndefined();
      expect(d.e.serialize().sellers.filter((s) => s.interval_id === iv)).toEqual([]);
      expect(rejection(d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 1, interval_id: iv, limit_wh: 5 }))).toBe('INTERVAL_CLOSED');
      expect(rejection(d.sell(1, 100, 5, { interval_id: iv }))).toBe('INTERVAL_CLOSED');
      sizes.push(JSON.stringify(d.e.serialize().sellers).length);
    }
    // the seller slots of closed books are reused: none left over, whatever the number of intervals
    expect(new Set(sizes)).toEqual(new Set([2]));
    expect((d.e as unknown as { sellerN: number }).sellerN).toBeLessThanOrEqual(20);
  });
});

describe('events and snapshots', () => {
  it('BOOK_LEVEL gives the new total at (side, price) over all sources and for the source', () => {
    const d = new Driver();
    d.sell(1, 100, 5, { source: 'WIND' });
    const ev = d.sell(1, 100, 7, { source: 'SOLAR', order_id: 50 });
    expect(ev.at(-1)).toMatchObject({ type: 'BOOK_LEVEL', side: 'SELL', source: 'SOLAR', price_ticks: 100, qty_wh: 12, source_qty_wh: 7, source_order_count: 1 });
    const gone = d.cancel(50, 1);
    expect(gone.at(-1)).toMatchObject({ type: 'BOOK_LEVEL', price_ticks: 100, qty_wh: 5, source_qty_wh: 0, source_order_count: 0 });
  });

  it('L2 aggregates levels per side best first, optionally by source; L3 lists orders in priority order', () => {
    const d = new Driver();
    d.sell(1, 101, 5, { source: 'WIND', order_id: 1 });
    d.sell(1, 100, 5, { source: 'SOLAR', order_id: 2 });
    d.sell(2, 101, 3, { source: 'SOLAR', order_id: 3 });
    d.buy(3, 90, 4, { order_id: 4 });
    d.buy(3, 95, 4, { source: 'HYDRO', order_id: 5 });
    expect(d.e.l2(IV)).toEqual({
      interval_id: IV,
      bids: [{ price_ticks: 95, qty_wh: 4, order_count: 1 }, { price_ticks: 90, qty_wh: 4, order_count: 1 }],
      asks: [{ price_ticks: 100, qty_wh: 5, order_count: 1 }, { price_ticks: 101, qty_wh: 8, order_count: 2 }],
    });
    expect(d.e.l2(IV, { source: 'SOLAR' }).asks).toEqual([{ price_ticks: 100, qty_wh: 5, order_count: 1 }, { price_ticks: 101, qty_wh: 3, order_count: 1 }]);
    expect(d.e.l2(IV, { depth: 1 }).asks).toHaveLength(1);
    expect(d.e.l3(IV).asks.map((o) => o.order_id)).toEqual([2, 1, 3]);
    expect(d.e.l3(IV).bids.map((o) => o.order_id)).toEqual([5, 4]);
    expect(d.e.openOrdersOfUser(1).map((o) => o.order_id)).toEqual([1, 2]);
  });

  it('events are plain serialisable objects', () => {
    const d = new Driver();
    d.sell(1, 100, 5);
    const ev = d.buy(2, 100, 3);
    expect(JSON.parse(JSON.stringify(ev))).toEqual(ev);
  });

  it('serialize -> restore gives the same state hash and the same L3', () => {
    const d = new Driver();
    d.sell(1, 100, 5, { expire_at_ms: 9000 });
    d.sell(2, 100, 5, { source: 'HYDRO' });
    d.buy(3, 90, 5);
    d.buy(4, 100, 2);
    const snap = JSON.parse(JSON.stringify(d.e.serialize()));
    const r = ZoneEngine.restore(snap);
    expect(r.stateHash()).toBe(d.e.stateHash());
    expect(r.l3(IV)).toEqual(d.e.l3(IV));
    expect(d.e.stateHash()).toMatch(/^[0-9a-f]{16}$/);
  });

  it('bad commands are REJECTED, never thrown', () => {
    const d = new Driver();
    expect(rejection(d.run({ type: 'NOPE', ts_ms: 1 } as never))).toBe('INVALID_COMMAND');
    expect(rejection(d.run({ type: 'PLACE', ts_ms: 'x' } as never))).toBe('INVALID_ORDER');
    expect(rejection(d.run({ type: 'OPEN_INTERVAL', ts_ms: 1, interval_id: IV, capacity_wh: 5 }))).toBe('INTERVAL_EXISTS');
    expect(rejection(d.run({ type: 'GATE_CLOSE', ts_ms: 1, interval_id: 5 }))).toBe('UNKNOWN_INTERVAL');
    expect(rejection(d.run({ type: 'HALT', ts_ms: 1, policy: 'X' as never }))).toBe('INVALID_COMMAND');
  });
});
