// Property tests over long random command streams (all order types, STP modes, cancels, amends,
// mass cancels, halts, maintenance, gate closures, good-till-time expiry). After every command:
// the book is never crossed (except at capacity or between incompatible sources); quantity is
// conserved per order; no fill skips an earlier compatible order at a better or equal price;
// no self-trade; capacity and seller limits hold; FOK is all or nothing; POST_ONLY never takes;
// the L2 book kept from BOOK_LEVEL events equals the engine's L2.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ZoneEngine } from '../../engine/index.js';
import type { Command, EngineEvent, OrderType, OrderView, Side, Source } from '../../engine/index.js';
import { INTERVALS, streamArb, ZONE } from './stream.js';
import type { Stream } from './stream.js';

interface ModelOrder {
  id: number;
  user: number;
  side: Side;
  source: Source;
  type: OrderType;
  iv: number;
  total: number;
  filled: number;
  closed: number;
}

interface Taker {
  id: number;
  user: number;
  side: Side;
  source: Source;
  type: OrderType;
  price: number;
}

function fail(msg: string): never {
  throw new Error(msg);
}

function compatible(taker: Taker, maker: OrderView): boolean {
  if (taker.side === 'BUY') return taker.source === 'ANY' || maker.source === taker.source;
  return maker.source === taker.source || maker.source === 'ANY';
}

/** Does o come before m in priority on the makers' side? */
function ahead(o: OrderView, m: OrderView): boolean {
  if (o.price_ticks !== m.price_ticks) return o.side === 'SELL' ? o.price_ticks < m.price_ticks : o.price_ticks > m.price_ticks;
  return o.seq < m.seq;
}

class Checker {
  readonly orders = new Map<number, ModelOrder>();
  readonly matched = new Map<number, number>();
  readonly sold = new Map<string, number>();
  readonly l2 = new Map<string, number>();
  lastEventSeq = 0;
  fills = 0;
  stpCancels = 0;
  expiries = 0;
  crossedAtCapacity = 0;

  constructor(
    readonly e: ZoneEngine,
    readonly limits: Map<string, number>,
  ) {}

  run(cmd: Command, at: number): void {
    const before = new Map<number, OrderView>();
    if (cmd.type === 'PLACE' || cmd.type === 'AMEND') {
      for (const iv of INTERVALS) {
        const l3 = this.e.l3(iv);
        for (const o of [...l3.bids, ...l3.asks]) before.set(o.order_id, { ...o });
      }
    }
    const events = this.e.apply(cmd);
    try {
      this.replay(cmd, events, before);
      this.checkState();
    } catch (err) {
      throw new Error(`after command #${at} ${JSON.stringify(cmd)}: ${(err as Error).message}\nevents: ${JSON.stringify(events)}`);
    }
  }

  private replay(cmd: Command, events: EngineEvent[], live: Map<number, OrderView>): void {
    let taker: Taker | undefined;
    const touched = new Set<number>();
    for (const ev of events) {
      if (ev.event_seq !== this.lastEventSeq + 1) fail(`event_seq ${ev.event_seq} after ${this.lastEventSeq}`);
      this.lastEventSeq = ev.event_seq;
      switch (ev.type) {
        case 'ACCEPTED':
          taker = { id: ev.order_id, user: ev.user_id, side: ev.side, source: ev.source, type: ev.order_type, price: ev.price_ticks };
          this.orders.set(ev.order_id, { id: ev.order_id, user: ev.user_id, side: ev.side, source: ev.source, type: ev.order_type, iv: ev.interval_id, total: ev.qty_wh, filled: 0, closed: 0 });
          touched.add(ev.order_id);
          break;
        case 'AMENDED': {
          const m = this.orders.get(ev.order_id) ?? fail(`amend of unknown order ${ev.order_id}`);
          m.total = ev.qty_wh;
          if (ev.remaining_wh !== m.total - m.filled) fail(`amend remaining ${ev.remaining_wh} != ${m.total} - ${m.filled}`);
          touched.add(ev.order_id);
          if (ev.priority_kept) {
            const o = live.get(ev.order_id);
            if (o) o.remaining_wh = ev.remaining_wh;
          } else {
            live.delete(ev.order_id);
            taker = { id: m.id, user: m.user, side: m.side, source: m.source, type: m.type, price: ev.price_ticks };
          }
          break;
        }
        case 'FILL': {
          this.fills++;
          if (!taker || taker.id !== ev.taker_order_id) fail(`fill without its taker`);
          if (ev.maker_user_id === ev.taker_user_id) fail(`self-trade by user ${ev.maker_user_id}`);
          if (taker.type === 'POST_ONLY') fail('a POST_ONLY took liquidity');
          const maker = live.get(ev.maker_order_id) ?? fail(`maker ${ev.maker_order_id} was not resting`);
          if (maker.side === taker.side || !compatible(taker, maker)) fail('incompatible maker');
          if (ev.price_ticks !== maker.price_ticks) fail('fill not at the maker price');
          if (taker.side === 'BUY' ? ev.price_ticks > taker.price : ev.price_ticks < taker.price) fail('fill beyond the taker limit');
          if (ev.source !== (taker.side === 'BUY' ? maker.source : taker.source)) fail('fill source is not the SELL source');
          for (const o of live.values()) {
            if (o.side === maker.side && o.interval_id === maker.interval_id && compatible(taker, o) && ahead(o, maker)) {
              fail(`fill skipped order ${o.order_id} (price ${o.price_ticks}, seq ${o.seq}) ahead of maker ${maker.order_id} (price ${maker.price_ticks}, seq ${maker.seq})`);
            }
          }
          maker.remaining_wh -= ev.qty_wh;
          if (maker.remaining_wh !== ev.maker_remaining_wh) fail('maker remaining mismatch');
          if (maker.remaining_wh === 0) live.delete(maker.order_id);
          const mm = this.orders.get(ev.maker_order_id) ?? fail('unknown maker');
          const tm = this.orders.get(ev.taker_order_id) ?? fail('unknown taker');
          mm.filled += ev.qty_wh;
          tm.filled += ev.qty_wh;
          if (tm.total - tm.filled !== ev.taker_remaining_wh) fail('taker remaining mismatch');
          touched.add(mm.id).add(tm.id);
          this.matched.set(ev.interval_id, (this.matched.get(ev.interval_id) ?? 0) + ev.qty_wh);
          const seller = taker.side === 'SELL' ? ev.taker_user_id : ev.maker_user_id;
          const key = `${seller}:${ev.interval_id}`;
          this.sold.set(key, (this.sold.get(key) ?? 0) + ev.qty_wh);
          break;
        }
        case 'CANCELLED':
        case 'EXPIRED': {
          const m = this.orders.get(ev.order_id) ?? fail(`close of unknown order ${ev.order_id}`);
          if (m.closed !== 0) fail(`order ${m.id} closed twice`);
          if (ev.qty_wh !== m.total - m.filled) fail(`closed qty ${ev.qty_wh} != remaining ${m.total - m.filled}`);
          m.closed = ev.qty_wh;
          live.delete(ev.order_id);
          touched.add(ev.order_id);
          if (ev.type === 'CANCELLED' && ev.reason === 'SELF_TRADE') this.stpCancels++;
          if (ev.type === 'EXPIRED') this.expiries++;
          if (ev.type === 'CANCELLED' && m.type === 'FOK') fail('a FOK was cancelled after acceptance');
          break;
        }
        case 'BOOK_LEVEL':
          this.l2.set(`${ev.interval_id}:${ev.side}:${ev.price_ticks}`, ev.qty_wh);
          break;
        default:
          break;
      }
    }
    // per-order conservation: total = filled + resting + cancelled/expired
    for (const id of touched) {
      const m = this.orders.get(id) as ModelOrder;
      const open = this.e.order(id);
      if (open) {
        if (m.closed !== 0) fail(`order ${id} is open but was closed`);
        if (open.remaining_wh !== m.total - m.filled || open.filled_wh !== m.filled || open.qty_wh !== m.total) fail(`order ${id} quantities drifted`);
      } else if (m.total !== m.filled + m.closed) {
        fail(`order ${id} lost quantity: total ${m.total}, filled ${m.filled}, closed ${m.closed}`);
      }
      if (m.type === 'FOK' && m.filled !== m.total) fail(`FOK ${id} partially filled`);
    }
    if (cmd.type === 'PLACE' && cmd.order_type === 'FOK' && events.some((e) => e.type === 'ACCEPTED')) {
      if (this.orders.get(cmd.order_id)?.filled !== cmd.qty_wh) fail('accepted FOK not fully filled');
    }
  }

  private checkState(): void {
    for (const iv of INTERVALS) {
      const info = this.e.interval(iv);
      if (info === undefined) continue; // not opened yet
      if (info.matched_wh > info.capacity_wh) fail(`capacity exceeded in ${iv}`);
      if (info.matched_wh !== (this.matched.get(iv) ?? 0)) fail('matched Wh differ from the fills');
      const l3 = this.e.l3(iv);
      const capLeft = info.capacity_wh - info.matched_wh;
      for (const src of ['SOLAR', 'WIND', 'BATTERY', 'HYDRO']) {
        const ask = l3.asks.find((o) => o.source === src);
        const bid = l3.bids.find((o) => o.source === src || o.source === 'ANY');
        if (ask && bid && bid.price_ticks >= ask.price_ticks) {
          if (capLeft > 0) fail(`book ${iv} crossed for ${src}: bid ${bid.price_ticks} >= ask ${ask.price_ticks} with capacity left`);
          this.crossedAtCapacity++;
        }
      }
      // L2 from BOOK_LEVEL events equals the engine's L2
      const l2 = this.e.l2(iv);
      for (const [side, levels] of [['BUY', l2.bids], ['SELL', l2.asks]] as const) {
        for (const l of levels) if (this.l2.get(`${iv}:${side}:${l.price_ticks}`) !== l.qty_wh) fail(`L2 ${side} ${l.price_ticks} differs from events`);
      }
      for (const [key, qty] of this.l2) {
        const [ivs, side, price] = key.split(':');
        if (Number(ivs) !== iv || qty === 0) continue;
        const levels = side === 'BUY' ? l2.bids : l2.asks;
        if (!levels.some((l) => l.price_ticks === Number(price))) fail(`event L2 has a level the engine does not: ${key}`);
      }
      // seller feasibility
      for (const [key, limit] of this.limits) {
        const [user, ivs] = key.split(':').map(Number);
        if (ivs !== iv) continue;
        const s = this.e.seller(user, iv);
        if (s && s.open_sell_wh + s.sold_wh > limit) fail(`seller ${user} over its limit in ${iv}`);
      }
    }
    const closed = new Set(this.e.intervals().filter((v) => v.closed).map((v) => v.interval_id));
    for (const iv of INTERVALS) {
      for (let user = 1; user <= 4; user++) {
        const s = this.e.seller(user, iv);
        // a closed interval's sellers are retired (nothing can be sold in it any more)
        if (closed.has(iv)) {
          if (s !== undefined) fail(`seller ${user} of closed interval ${iv} still held`);
        } else if ((s?.sold_wh ?? 0) !== (this.sold.get(`${user}:${iv}`) ?? 0)) fail(`seller ${user} sold differs from fills`);
      }
    }
  }

  /** Global conservation over every accepted order. */
  conservation(): { submitted: number; accounted: number } {
    let submitted = 0;
    let accounted = 0;
    for (const m of this.orders.values()) {
      submitted += m.total;
      accounted += m.filled + m.closed + (this.e.order(m.id)?.remaining_wh ?? 0);
    }
    return { submitted, accounted };
  }
}

function check(stream: Stream): Checker {
  const e = new ZoneEngine(ZONE);
  // Limits are only set at the start, so "open + sold <= limit" must hold throughout.
  const limits = new Map<string, number>();
  for (const s of stream.sellerLimits) limits.set(`${s.user}:${INTERVALS[s.iv]}`, s.limit);
  const c = new Checker(e, limits);
  stream.commands.forEach((cmd, i) => c.run(cmd, i));
  const { submitted, accounted } = c.conservation();
  expect(accounted).toBe(submitted);
  return c;
}

describe('engine properties on random command streams', () => {
  it('after every command: never crossed (except at capacity / incompatible sources), quantity conserved, no fill skips priority, no self-trade, capacity and seller limits hold, L2 events match', () => {
    let fills = 0;
    let stp = 0;
    let expiries = 0;
    let crossed = 0;
    fc.assert(
      fc.property(streamArb(500, 1500), (stream) => {
        const c = check(stream);
        fills += c.fills;
        stp += c.stpCancels;
        expiries += c.expiries;
        crossed += c.crossedAtCapacity;
      }),
      { numRuns: 80 },
    );
    // the streams exercise what they claim to
    expect(fills).toBeGreaterThan(2_000);
    expect(stp).toBeGreaterThan(20);
    expect(expiries).toBeGreaterThan(20);
    expect(crossed).toBeGreaterThan(0);
    console.log(`properties: ${fills} fills, ${stp} self-trade cancels, ${expiries} expiries, ${crossed} crossed-at-capacity observations`);
  });
});
