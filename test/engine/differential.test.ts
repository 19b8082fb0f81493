// Differential test against nodejs-order-book@10.1.1, an independent price-time-priority book:
// on random streams of plain limit (GTC), IOC, market and cancel commands with source ANY and one
// user per order (so self-trade prevention never applies), both must produce the same fills in
// the same order at the same prices and quantities, agree on which cancels hit an open order, and
// end with the same depth.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PeerBook } from '../../bench/peer-order-book.js';
import { ZoneEngine } from '../../engine/index.js';
import type { EngineEvent } from '../../engine/index.js';
import { mulberry32 } from '../../bench/prng.js';

const ZONE = 1;
const IV = 1;
const BAND = 1_000_000;

function newEngine(): ZoneEngine {
  const e = new ZoneEngine(ZONE);
  e.execute({ type: 'CONFIGURE_ZONE', ts_ms: 0, zone_id: ZONE, price_step_ticks: 1, lot_wh: 1, band_min_ticks: -BAND, band_max_ticks: BAND, min_qty_wh: 1, max_qty_wh: 1e9, max_open_orders_per_user: 1e6 });
  e.execute({ type: 'OPEN_INTERVAL', ts_ms: 0, interval_id: IV, capacity_wh: Number.MAX_SAFE_INTEGER });
  return e;
}


type Fill = [maker: number, taker: number, price: number, qty: number];

function engineFills(events: EngineEvent[]): Fill[] {
  const out: Fill[] = [];
  for (const e of events) if (e.type === 'FILL') out.push([e.maker_order_id, e.taker_order_id, e.price_ticks, e.qty_wh]);
  return out;
}

function runStream(seed: number, commands: number): { fills: number; cancels: number } {
  const rnd = mulberry32(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const e = newEngine();
  const peer = new PeerBook();
  let mid = 10_000;
  let nextId = 1;
  const placed: number[] = [];
  let totalFills = 0;
  let hitCancels = 0;
  for (let i = 0; i < commands; i++) {
    mid += int(-2, 2);
    const r = rnd();
    const id = nextId++;
    const side = rnd() < 0.5 ? 'BUY' : 'SELL';
    const peerSide = side === 'BUY' ? 'buy' : 'sell';
    const base = { type: 'PLACE', ts_ms: i, order_id: id, user_id: id, client_order_id: `c${id}`, zone_id: ZONE, interval_id: IV, side, source: side === 'BUY' ? 'ANY' : 'SOLAR' } as const;
    let mine: Fill[];
    let theirs: Fill[];
    if (r < 0.12 && placed.length > 0) {
      // cancel a random earlier order, open or not
      const target = placed[int(0, placed.length - 1)];
      const ev = e.apply({ type: 'CANCEL', ts_ms: i, order_id: target, user_id: target });
      const mineHit = ev[0].type === 'CANCELLED';
      const theirHit = peer.cancel(target);
      expect(mineHit, `cancel ${target} at command ${i}`).toBe(theirHit);
      if (mineHit) hitCancels++;
      continue;
    } else if (r < 0.2) {
      const qty = int(1, 120);
      const ev = e.apply({ ...base, order_type: 'MARKET', price_ticks: side === 'BUY' ? BAND : -BAND, qty_wh: qty });
      mine = engineFills(ev);
      theirs = peer.market(id, peerSide, qty).map((f) => [f.maker_order_id, f.taker_order_id, f.price_ticks, f.qty_wh]);
    } else {
      const ioc = r < 0.3;
      const cross = rnd() < 0.2;
      const off = cross ? -int(0, 4) : int(1, 30);
      const price = side === 'BUY' ? mid - off : mid + off;
      const qty = int(1, 60);
      const ev = e.apply({ ...base, order_type: ioc ? 'IOC' : 'LIMIT', price_ticks: price, qty_wh: qty });
      mine = engineFills(ev);
      theirs = peer.limit(id, peerSide, price, qty, ioc ? 'IOC' : 'GTC').map((f) => [f.maker_order_id, f.taker_order_id, f.price_ticks, f.qty_wh]);
      placed.push(id);
    }
    expect(mine, `fills of command ${i} (order ${id})`).toEqual(theirs);
    totalFills += mine.length;
  }
  // same final depth
  const l2 = e.l2(IV);
  const depth = peer.depth();
  expect(l2.asks.map((l) => [l.price_ticks, l.qty_wh])).toEqual(depth.asks);
  expect(l2.bids.map((l) => [l.price_ticks, l.qty_wh])).toEqual(depth.bids);
  return { fills: totalFills, cancels: hitCancels };
}

describe('differential: kwx engine vs nodejs-order-book@10.1.1', () => {
  it('same fills, same order, same prices and quantities, same cancels, same final depth on random limit/IOC/market/cancel streams', () => {
    let fills = 0;
    let cancels = 0;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const r = runStream(seed, 2_000);
        fills += r.fills;
        cancels += r.cancels;
      }),
      { numRuns: 15 },
    );
    // the streams really trade and really cancel resting orders
    expect(fills).toBeGreaterThan(1_000);
    expect(cancels).toBeGreaterThan(100);
  });

  it('agrees on one long stream (20,000 commands)', () => {
    const r = runStream(12345, 20_000);
    expect(r.fills).toBeGreaterThan(1_000);
  });
});
