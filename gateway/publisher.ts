// The exchange side of market data: turns committed engine events into sequenced bus messages —
// book deltas with checksums, trades, tickers, zone and gate status per (zone, interval), and each
// user's private stream (orders, fills, balances). It also applies the events to the funds
// (holds → escrow → releases). Runs in the process that runs the engine; gateways subscribe to
// the bus. Sequence numbers start at 1 per channel per publisher epoch.
import { randomBytes } from 'node:crypto';
import type { EngineEvent, OrderView } from '../engine/index.js';
import { SNAPSHOT_REQUEST_CHANNEL, type Bus, type BusMessage } from './bus.js';
import { ZONE_ID_SHIFT, type CommittedEvents, type Funds, type TradingBackend } from './backend.js';
import { bookChecksum, CRC32_INIT, crc32Digits, crc32Finish } from './checksum.js';
import { CHECKSUM_DEPTH, MAX_REMEMBERED_FINISHED_ORDERS } from './limits.js';
import { LevelBook, wireLevels, type LevelSide } from './levels.js';
import { tickMantissa, ticksToPrice, vwapToPrice, whToKwh, type PriceUnit } from './units.js';
import type { ZoneCatalog } from './zones.js';

export const bookChannel = (zone_id: number, interval_id: number): string => `book.${zone_id}.${interval_id}`;
export const tradesChannel = (zone_id: number, interval_id: number): string => `trades.${zone_id}.${interval_id}`;
export const tickerChannel = (zone_id: number, interval_id: number): string => `ticker.${zone_id}.${interval_id}`;
export const statusChannel = (zone_id: number): string => `status.${zone_id}`;
export const userChannel = (user_id: number): string => `user.${user_id}`;

export type OrderStatus = 'ACTIVE' | 'PARTIALLY_FILLED' | 'MATCHED' | 'CANCELLED' | 'EXPIRED';

export interface TrackedOrder {
  order_id: number;
  user_id: number;
  client_order_id: string;
  zone_id: number;
  interval_id: number;
  side: 'BUY' | 'SELL';
  order_type: string;
  source: string;
  price_ticks: number;
  qty_wh: number;
  filled_wh: number;
  status: OrderStatus;
  reason: string | null;
}

/** One partition of the tracker: order ids zone × 2^36 + seq are keyed by their seq. */
interface TrackedPart {
  open: Map<number, TrackedOrder>;
  finished: Map<number, TrackedOrder>;
}

/**
 * Open orders, plus the last MAX_REMEMBERED_FINISHED_ORDERS finished ones. Kept per
 * floor(order_id / 2^36) (the zone of an engine order id) and keyed by the rest (the zone's
 * seq): a small integer key, where the whole id (> 2^31) was a heap number allocated for every
 * Map key and compared by value.
 */
export class OrderTracker {
  private readonly parts = new Map<number, TrackedPart>();
  /**
   * The finished orders' ids in the order they finished (a ring): the oldest is evicted by key.
   * `finished.keys().next()` had to step over every entry deleted before it (a Map keeps deleted
   * slots until it rehashes): ~5 µs per finished order once the Map was full.
   */
  private readonly ring: number[] = [];
  private head = 0;
  private finishedCount = 0;
  constructor(private readonly max = MAX_REMEMBERED_FINISHED_ORDERS) {}
  private part(order_id: number, create: boolean): TrackedPart | undefined {
    const hi = Math.floor(order_id / ZONE_ID_SHIFT);
    let p = this.parts.get(hi);
    if (p === undefined && create) this.parts.set(hi, (p = { open: new Map(), finished: new Map() }));
    return p;
  }
  private static low(order_id: number): number {
    return order_id - Math.floor(order_id / ZONE_ID_SHIFT) * ZONE_ID_SHIFT;
  }
  /** An order that rests or may still trade (ACCEPTED, or found in the book at start-up). */
  add(o: TrackedOrder): void {
    this.part(o.order_id, true)!.open.set(OrderTracker.low(o.order_id), o);
  }
  isOpen(order_id: number): boolean {
    return this.part(order_id, false)?.open.has(OrderTracker.low(order_id)) === true;
  }
  get(order_id: number): TrackedOrder | undefined {
    const p = this.part(order_id, false);
    if (p === undefined) return undefined;
    const k = OrderTracker.low(order_id);
    return p.open.get(k) ?? p.finished.get(k);
  }
  finish(o: TrackedOrder): void {
    const p = this.part(o.order_id, true)!;
    const k = OrderTracker.low(o.order_id);
    p.open.delete(k);
    const size = p.finished.size;
    p.finished.set(k, o);
    if (p.finished.size === size) return; // finished before: it keeps its place, as in a Map
    if (this.finishedCount < this.max) {
      this.finishedCount++;
      this.ring.push(o.order_id);
      return;
    }
    // full: the oldest id leaves its Map and the ring, the new one takes its slot
    const old = this.ring[this.head];
    this.part(old, false)?.finished.delete(OrderTracker.low(old));
    this.ring[this.head] = o.order_id;
    this.head = this.head + 1 === this.max ? 0 : this.head + 1;
  }
  openOfUser(user_id: number): TrackedOrder[] {
    const out: TrackedOrder[] = [];
    for (const p of this.parts.values()) for (const o of p.open.values()) if (o.user_id === user_id) out.push(o);
    return out;
  }
}

interface Market {
  zone_id: number;
  interval_id: number;
  /** Its channel names, made once (a fresh string per publish was also hashed afresh by the bus's Map). */
  book_channel: string;
  trades_channel: string;
  ticker_channel: string;
  book: LevelBook;
  /**
   * The checksum of the book as last computed, and the CRC state after its asks part: valid until
   * a level in the top CHECKSUM_DEPTH of a side changes (a change deeper in the book leaves the
   * checksummed levels as they were; a change of bids only leaves the asks part as it was).
   */
  ck: number;
  ck_valid: boolean;
  ck_asks_state: number;
  ck_asks_valid: boolean;
  book_seq: number;
  trades_seq: number;
  ticker_seq: number;
  last_ticks: number | null;
  /**
   * Traded volume (Wh) and notional (Σ ticks × Wh), exact: summed as Numbers while the sums are
   * safe integers (no BigInt allocated per fill), the rest carried in the BigInt parts.
   */
  volume_n: number;
  notional_n: number;
  volume_big: bigint;
  notional_big: bigint;
  trade_count: number;
  gate: 'OPEN' | 'CLOSED';
  /** When its gate closed (ms), for eviction; 0 while open. */
  closed_at_ms: number;
}

/**
 * How long a closed market's state (its final ticker, trade seq) stays in memory after its gate
 * closure. A zone closes 96 intervals a day: keeping every market would grow without bound. A
 * request for an evicted (or never traded) market's channel is answered from an empty one.
 */
export const CLOSED_MARKET_RETAIN_MS = 6 * 3_600_000;

interface ZoneState {
  status: string;
  status_seq: number;
  markets: Map<number, Market>;
}

export interface Publisher {
  readonly epoch: string;
  readonly orders: OrderTracker;
  /** The L2 book as the publisher holds it (tests compare it with the engine's). */
  book(zone_id: number, interval_id: number): LevelBook | undefined;
  /** The seq of the last book message published for a market (0 when none). */
  bookSeq(zone_id: number, interval_id: number): number;
  /** Publishes a notification on a user's private stream. */
  notify(user_id: number, n: { kind: string; title: string; body: string }): void;
  stop(): void;
}

export function wireOrder(o: TrackedOrder, unit: PriceUnit): Record<string, unknown> {
  return {
    order_id: o.order_id,
    client_order_id: o.client_order_id,
    zone_id: o.zone_id,
    interval_id: o.interval_id,
    side: o.side,
    order_type: o.order_type,
    source: o.source,
    price: ticksToPrice(o.price_ticks, unit),
    qty: whToKwh(o.qty_wh),
    filled_qty: whToKwh(o.filled_wh),
    remaining_qty: whToKwh(o.status === 'ACTIVE' || o.status === 'PARTIALLY_FILLED' ? o.qty_wh - o.filled_wh : 0),
    status: o.status,
    reason: o.reason,
  };
}

export function formatMinor(v: bigint, minor_units: number): string {
  const neg = v < 0n;
  const a = neg ? -v : v;
  if (minor_units === 0) return (neg ? '-' : '') + a.toString();
  const s = a.toString().padStart(minor_units + 1, '0');
  return `${neg ? '-' : ''}${s.slice(0, -minor_units)}.${s.slice(-minor_units)}`;
}

export async function startPublisher(opts: {
  backend: TradingBackend;
  funds: Funds;
  bus: Bus;
  catalog: ZoneCatalog;
  now?: () => number;
}): Promise<Publisher> {
  const { backend, funds, bus, catalog } = opts;
  const now = opts.now ?? Date.now;
  const epoch = randomBytes(6).toString('hex');
  const orders = new OrderTracker();
  const zones = new Map<number, ZoneState>();
  /** Per user: the private stream's last seq and its channel name. */
  const userStreams = new Map<number, { seq: number; channel: string }>();
  const fallbackUnit: PriceUnit = { tick_size: '1', decimals: 0 };
  const unitOf = (zone_id: number): PriceUnit => catalog.get(zone_id)?.unit ?? fallbackUnit;

  const zoneState = (zone_id: number): ZoneState => {
    let z = zones.get(zone_id);
    if (z === undefined) zones.set(zone_id, (z = { status: 'ACTIVE', status_seq: 0, markets: new Map() }));
    return z;
  };
  const newMarket = (zone_id: number, interval_id: number): Market => ({
    zone_id, interval_id, book_channel: bookChannel(zone_id, interval_id), trades_channel: tradesChannel(zone_id, interval_id), ticker_channel: tickerChannel(zone_id, interval_id),
    book: new LevelBook(), ck: 0, ck_valid: false, ck_asks_state: 0, ck_asks_valid: false, book_seq: 0, trades_seq: 0, ticker_seq: 0, last_ticks: null, volume_n: 0, notional_n: 0, volume_big: 0n, notional_big: 0n, trade_count: 0, gate: 'OPEN',
    closed_at_ms: 0,
  });
  /** The market's state, made on its first committed event (only the engine's events create markets). */
  const market = (zone_id: number, interval_id: number): Market => {
    const z = zoneState(zone_id);
    let m = z.markets.get(interval_id);
    if (m === undefined) z.markets.set(interval_id, (m = newMarket(zone_id, interval_id)));
    return m;
  };
  /** Drops the zone's markets whose gate closed more than CLOSED_MARKET_RETAIN_MS before `ts`. */
  const evictClosed = (z: ZoneState, ts: number): void => {
    for (const [iv, m] of z.markets) if (m.gate === 'CLOSED' && m.closed_at_ms + CLOSED_MARKET_RETAIN_MS < ts) z.markets.delete(iv);
  };

  const levels = (m: Market, depth: number) => {
    const u = unitOf(m.zone_id);
    const p = (t: number) => ticksToPrice(t, u);
    return { bids: wireLevels(m.book.bids, depth, p, whToKwh), asks: wireLevels(m.book.asks, depth, p, whToKwh) };
  };
  /** A level of a side changed (qty 0: removed): forget the checksum parts it is in. */
  const levelChanged = (m: Market, side: LevelSide, price: number): void => {
    if (!m.ck_valid && !m.ck_asks_valid) return;
    // After the change: the top CHECKSUM_DEPTH levels changed iff the side now has fewer levels
    // than that, or the price is at or better than the side's CHECKSUM_DEPTH-th best (an insert or
    // removal there moves the levels below it; one deeper moves none of the top ones).
    const ps = side.prices;
    if (ps.length >= CHECKSUM_DEPTH) {
      const last = ps[CHECKSUM_DEPTH - 1];
      if (side.desc ? price < last : price > last) return;
    }
    m.ck_valid = false;
    if (side === m.book.asks) m.ck_asks_valid = false;
  };
  /** CRC state after one side's top levels (null: a value with no exact integer digits). */
  const crcSide = (c: number, side: LevelSide, mant: number): number | null => {
    for (let i = 0, n = Math.min(CHECKSUM_DEPTH, side.prices.length); i < n; i++) {
      const p = side.prices[i];
      const v = p * mant;
      const q = side.qty.get(p)!;
      if (!Number.isSafeInteger(v) || !Number.isSafeInteger(q)) return null;
      c = crc32Digits(crc32Digits(c, v), q);
    }
    return c;
  };
  const checksum = (m: Market): number => {
    // Per delta: straight from the integers. A price's checksum digits are ticks × mantissa (its
    // string without '.' and leading zeros) and a quantity's are its Wh ("1.500" kWh → 1500), so
    // no level strings are built; same value as bookChecksum() on the wire levels (tested). Parts
    // no change reached since the last delta are reused (levelChanged).
    if (m.ck_valid) return m.ck;
    const mant = tickMantissa(unitOf(m.zone_id));
    if (mant !== null) {
      const a = m.ck_asks_valid ? m.ck_asks_state : crcSide(CRC32_INIT, m.book.asks, mant);
      const c = a === null ? null : crcSide(a, m.book.bids, mant);
      if (a !== null && c !== null) {
        m.ck_asks_state = a;
        m.ck_asks_valid = true;
        m.ck = crc32Finish(c);
        m.ck_valid = true;
        return m.ck;
      }
    }
    const l = levels(m, CHECKSUM_DEPTH);
    return bookChecksum(l.bids, l.asks);
  };
  const bookSnapshot = (m: Market, ts: number): BusMessage => {
    const all = levels(m, Number.MAX_SAFE_INTEGER);
    return {
      type: 'book',
      zone_id: m.zone_id,
      interval_id: m.interval_id,
      epoch,
      seq: m.book_seq,
      snapshot: true,
      bids: all.bids.map((l) => [l.price, l.qty]),
      asks: all.asks.map((l) => [l.price, l.qty]),
      checksum: bookChecksum(all.bids.slice(0, CHECKSUM_DEPTH), all.asks.slice(0, CHECKSUM_DEPTH)),
      ts,
    };
  };
  const tickerMessage = (m: Market, ts: number): BusMessage => {
    const u = unitOf(m.zone_id);
    const bb = m.book.bids.best();
    const ba = m.book.asks.best();
    const volume = BigInt(m.volume_n) + m.volume_big;
    return {
      type: 'ticker',
      zone_id: m.zone_id,
      interval_id: m.interval_id,
      epoch,
      seq: m.ticker_seq,
      last: m.last_ticks === null ? null : ticksToPrice(m.last_ticks, u),
      best_bid: bb === undefined ? null : ticksToPrice(bb, u),
      best_ask: ba === undefined ? null : ticksToPrice(ba, u),
      volume: whToKwh(Number(volume)),
      vwap: volume === 0n ? null : vwapToPrice(BigInt(m.notional_n) + m.notional_big, volume, u),
      trades: m.trade_count,
      ts,
    };
  };
  const statusMessage = (zone_id: number, z: ZoneState, ts: number, extra: Record<string, unknown> = {}): BusMessage => ({
    type: 'status',
    zone_id,
    epoch,
    seq: z.status_seq,
    zone_status: z.status,
    ts,
    ...extra,
  });
  // Private messages of a committed command (orders, fills, balances) report ledger effects: they
  // leave only once the ledger holds them durably, in commit order (a FIFO behind funds.durable()).
  let outbox: [number, Record<string, unknown> & { type: string }][] | null = null;
  let tail: Promise<void> | null = null;
  const toUser = (user_id: number, msg: Record<string, unknown> & { type: string }): void => {
    if (outbox !== null) outbox.push([user_id, msg]);
    else emitUser(user_id, msg);
  };
  const flushOutbox = (): void => {
    const msgs = outbox;
    outbox = null;
    if (msgs === null || msgs.length === 0) return;
    const durable = funds.durable();
    if (durable === null && tail === null) {
      for (const [u, m] of msgs) emitUser(u, m);
      return;
    }
    const prev = tail;
    const p = (async () => {
      if (prev !== null) await prev;
      let d = durable;
      // A store in an outage rejects (EXCHANGE_UNAVAILABLE) but keeps the batch and writes it when
      // PostgreSQL returns: wait for that, never report what is not durable, never drop a message.
      for (let attempt = 0; d !== null; attempt++) {
        try {
          await d;
          break;
        } catch {
          await new Promise((r) => setTimeout(r, Math.min(1000, 20 * 2 ** Math.min(attempt, 6))));
          d = funds.durable();
        }
      }
      for (const [u, m] of msgs) emitUser(u, m);
    })();
    tail = p;
    void p.then(() => {
      if (tail === p) tail = null;
    });
  };
  const emitUser = (user_id: number, msg: Record<string, unknown> & { type: string }): void => {
    let u = userStreams.get(user_id);
    if (u === undefined) userStreams.set(user_id, (u = { seq: 0, channel: userChannel(user_id) }));
    msg.seq = ++u.seq;
    bus.publish(u.channel, msg);
  };
  const sendOrder = (o: TrackedOrder, ts: number): void => {
    // built in one object (no spread of a second one): this runs for every order event
    const unit = unitOf(o.zone_id);
    const open = o.status === 'ACTIVE' || o.status === 'PARTIALLY_FILLED';
    toUser(o.user_id, {
      type: 'order', order_id: o.order_id, client_order_id: o.client_order_id, zone_id: o.zone_id, interval_id: o.interval_id, side: o.side, order_type: o.order_type,
      source: o.source, price: ticksToPrice(o.price_ticks, unit), qty: whToKwh(o.qty_wh), filled_qty: whToKwh(o.filled_wh), remaining_qty: whToKwh(open ? o.qty_wh - o.filled_wh : 0),
      status: o.status, reason: o.reason, ts,
    });
  };

  // Initial state from the engine (a restart finds resting orders).
  for (const zone_id of backend.zones()) {
    await catalog.load(zone_id);
    const { state } = await backend.dump(zone_id);
    const z = zoneState(zone_id);
    if (state.config !== null) z.status = state.config.status;
    // open intervals only: closed ones have no book, and their tickers were not kept across the restart
    for (const iv of state.intervals) if (!iv.closed) market(zone_id, iv.interval_id);
    for (const o of state.orders as OrderView[]) {
      const m = market(zone_id, o.interval_id);
      const side = m.book.side(o.side);
      side.set(o.price_ticks, (side.qty.get(o.price_ticks) ?? 0) + o.remaining_wh);
      orders.add({
        order_id: o.order_id, user_id: o.user_id, client_order_id: o.client_order_id, zone_id, interval_id: o.interval_id, side: o.side,
        order_type: o.order_type, source: o.source, price_ticks: o.price_ticks, qty_wh: o.qty_wh, filled_wh: o.filled_wh,
        status: o.filled_wh > 0 ? 'PARTIALLY_FILLED' : 'ACTIVE', reason: null,
      });
    }
  }

  // Book deltas go out per command (each with the checksum of the book after it: a subscriber
  // checks every command's effect). The ticker is a snapshot: one per touched market per
  // event-loop turn (setImmediate), not one per command. Status messages, snapshot answers and
  // stop() publish a pending ticker first, so order is kept.
  const pendingTicker = new Map<Market, number>(); // market → ts of its last change
  let mdScheduled: NodeJS.Immediate | null = null;
  const tickerChanged = (m: Market, ts: number): void => {
    pendingTicker.set(m, ts);
    mdScheduled ??= setImmediate(flushMarketData);
  };
  function flushMarketData(): void {
    if (mdScheduled !== null) {
      clearImmediate(mdScheduled);
      mdScheduled = null;
    }
    if (pendingTicker.size === 0) return;
    const batch = [...pendingTicker];
    pendingTicker.clear();
    for (const [m, ts] of batch) {
      m.ticker_seq++;
      bus.publish(m.ticker_channel, tickerMessage(m, ts));
    }
  }

  const onCommitted = (c: CommittedEvents): void => {
    outbox = [];
    try {
      publishCommitted(c);
    } finally {
      flushOutbox();
    }
  };
  /** A trade's volume and notional into the market's exact sums (see Market.volume_n). */
  const addTraded = (m: Market, price_ticks: number, qty_wh: number): void => {
    const v = m.volume_n + qty_wh;
    if (Number.isSafeInteger(qty_wh) && Number.isSafeInteger(v)) m.volume_n = v;
    else {
      m.volume_big += BigInt(m.volume_n) + BigInt(qty_wh);
      m.volume_n = 0;
    }
    const x = price_ticks * qty_wh;
    const n = m.notional_n + x;
    if (Number.isSafeInteger(price_ticks) && Number.isSafeInteger(x) && Number.isSafeInteger(n)) m.notional_n = n;
    else {
      m.notional_big += BigInt(m.notional_n) + BigInt(price_ticks) * BigInt(qty_wh);
      m.notional_n = 0;
    }
  };
  /** One side (maker, then taker) of a fill: its order's progress, the fill and order messages. */
  const fillSide = (e: Extract<EngineEvent, { type: 'FILL' }>, oid: number, liquidity: 'MAKER' | 'TAKER', remaining: number, zone_id: number, price: string, qty: string, ts: number): void => {
    const o = orders.get(oid);
    if (o === undefined) return;
    o.filled_wh += e.qty_wh;
    o.status = remaining === 0 ? 'MATCHED' : 'PARTIALLY_FILLED';
    toUser(o.user_id, {
      type: 'fill', trade_id: e.trade_id, order_id: oid, client_order_id: o.client_order_id, zone_id, interval_id: e.interval_id, side: o.side, price, qty,
      source: e.source, liquidity, ts,
    });
    sendOrder(o, ts);
    if (remaining === 0) orders.finish(o);
  };
  const publishCommitted = (c: CommittedEvents): void => {
    const ts = c.ts_ms;
    let touched: Map<Market, string[][]> | null = null;
    const changedUsers = funds.apply(c);
    const z = zoneState(c.zone_id);
    for (const e of c.events as EngineEvent[]) {
      switch (e.type) {
        case 'BOOK_LEVEL': {
          const m = market(c.zone_id, e.interval_id);
          const side = m.book.side(e.side);
          side.set(e.price_ticks, e.qty_wh);
          levelChanged(m, side, e.price_ticks);
          touched ??= new Map();
          let ch = touched.get(m);
          if (ch === undefined) touched.set(m, (ch = []));
          ch.push([e.side, ticksToPrice(e.price_ticks, unitOf(c.zone_id)), whToKwh(e.qty_wh)]);
          break;
        }
        case 'FILL': {
          const m = market(c.zone_id, e.interval_id);
          m.trades_seq++;
          m.trade_count++;
          m.last_ticks = e.price_ticks;
          addTraded(m, e.price_ticks, e.qty_wh);
          tickerChanged(m, ts);
          const u = unitOf(c.zone_id);
          const price = ticksToPrice(e.price_ticks, u);
          const qty = whToKwh(e.qty_wh);
          const trade_id = e.trade_id;
          bus.publish(m.trades_channel, {
            type: 'trade', zone_id: c.zone_id, interval_id: e.interval_id, epoch, seq: m.trades_seq, trade_id, price, qty, source: e.source, taker_side: e.taker_side, ts,
          });
          fillSide(e, e.maker_order_id, 'MAKER', e.maker_remaining_wh, c.zone_id, price, qty, ts);
          fillSide(e, e.taker_order_id, 'TAKER', e.taker_remaining_wh, c.zone_id, price, qty, ts);
          break;
        }
        case 'ACCEPTED': {
          const o: TrackedOrder = {
            order_id: e.order_id, user_id: e.user_id, client_order_id: e.client_order_id, zone_id: c.zone_id, interval_id: e.interval_id, side: e.side,
            order_type: e.order_type, source: e.source, price_ticks: e.price_ticks, qty_wh: e.qty_wh, filled_wh: 0, status: 'ACTIVE', reason: null,
          };
          orders.add(o);
          sendOrder(o, ts);
          break;
        }
        case 'CANCELLED':
        case 'EXPIRED': {
          const o = orders.get(e.order_id);
          if (o === undefined) break;
          o.status = e.type;
          o.reason = e.type === 'CANCELLED' ? e.reason : e.cause;
          sendOrder(o, ts);
          orders.finish(o);
          break;
        }
        case 'AMENDED': {
          const o = orders.get(e.order_id);
          if (o === undefined) break;
          o.price_ticks = e.price_ticks;
          o.qty_wh = e.qty_wh;
          o.filled_wh = e.filled_wh;
          sendOrder(o, ts);
          break;
        }
        case 'ZONE_STATUS':
          flushMarketData();
          z.status = e.status;
          z.status_seq++;
          bus.publish(statusChannel(c.zone_id), statusMessage(c.zone_id, z, ts));
          break;
        case 'INTERVAL_OPENED':
        case 'GATE_CLOSED': {
          flushMarketData();
          const m = market(c.zone_id, e.interval_id);
          m.gate = e.type === 'GATE_CLOSED' ? 'CLOSED' : 'OPEN';
          if (e.type === 'GATE_CLOSED') {
            m.closed_at_ms = ts;
            evictClosed(z, ts);
          }
          z.status_seq++;
          bus.publish(statusChannel(c.zone_id), statusMessage(c.zone_id, z, ts, { interval_id: e.interval_id, gate: m.gate }));
          break;
        }
        default:
          break;
      }
    }
    if (touched !== null) {
      for (const [m, changes] of touched) {
        m.book_seq++;
        bus.publish(m.book_channel, {
          type: 'book', zone_id: m.zone_id, interval_id: m.interval_id, epoch, seq: m.book_seq, snapshot: false, changes, checksum: checksum(m), ts,
        });
        tickerChanged(m, ts);
      }
    }
    if (changedUsers.size > 0) {
      for (const user_id of changedUsers) balanceUsers.add(user_id);
      balanceTs = ts;
      balanceScheduled ??= setImmediate(flushBalances);
    }
  };
  // Balance messages are snapshots (available, held, escrow): one per changed user and currency
  // per event-loop turn, after the turn's order and fill messages (same durable FIFO), instead of
  // one per command that touched the user.
  const balanceUsers = new Set<number>();
  let balanceTs = 0;
  let balanceScheduled: NodeJS.Immediate | null = null;
  function flushBalances(): void {
    if (balanceScheduled !== null) {
      clearImmediate(balanceScheduled);
      balanceScheduled = null;
    }
    if (balanceUsers.size === 0) return;
    const users = [...balanceUsers];
    balanceUsers.clear();
    outbox = [];
    try {
      for (const user_id of users) {
        for (const b of funds.balances(user_id)) {
          toUser(user_id, {
            type: 'balance', currency: b.currency, available: formatMinor(b.available_minor, b.minor_units), held: formatMinor(b.held_minor, b.minor_units),
            escrow: formatMinor(b.escrow_minor, b.minor_units), ts: balanceTs,
          });
        }
      }
    } finally {
      flushOutbox();
    }
  }
  const off = backend.subscribeAll(onCommitted);

  // A gateway that joins or sees a gap asks for a channel's state; it travels on the channel itself.
  const offReq = await bus.subscribe(SNAPSHOT_REQUEST_CHANNEL, (req) => {
    const ch = String(req.channel ?? '');
    const [kind, zs, is] = ch.split('.');
    const zone_id = Number(zs);
    const interval_id = Number(is);
    const ts = now();
    if (!Number.isSafeInteger(zone_id) || zone_id <= 0) return;
    flushMarketData();
    if (kind === 'status') {
      bus.publish(ch, statusMessage(zone_id, zoneState(zone_id), ts));
      return;
    }
    if (!Number.isSafeInteger(interval_id) || interval_id <= 0) return;
    // A channel nobody has traded on (a future or unknown interval, or one evicted after its gate
    // closed) is answered from an empty market that is not kept: any client may ask for any
    // interval id, and keeping what they ask for would let them grow this process without bound.
    const m = zones.get(zone_id)?.markets.get(interval_id) ?? newMarket(zone_id, interval_id);
    if (kind === 'book') bus.publish(ch, bookSnapshot(m, ts));
    else if (kind === 'ticker') bus.publish(ch, tickerMessage(m, ts));
    else if (kind === 'trades') bus.publish(ch, { type: 'trades_start', zone_id, interval_id, epoch, seq: m.trades_seq, ts });
  });

  return {
    epoch,
    orders,
    book: (zone_id, interval_id) => zones.get(zone_id)?.markets.get(interval_id)?.book,
    bookSeq: (zone_id, interval_id) => {
      flushMarketData();
      return zones.get(zone_id)?.markets.get(interval_id)?.book_seq ?? 0;
    },
    notify(user_id, n) {
      bus.publish(userChannel(user_id), { type: 'notification', ...n, ts: now() });
    },
    stop() {
      flushMarketData();
      flushBalances();
      off();
      offReq();
    },
  };
}
