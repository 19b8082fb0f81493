// The narrow interfaces the gateway needs from the engine runtime and the ledger, and adapters:
// - TradingBackend: the runtime's internal API (engine/runtime: submit → committed result,
//   committed events). `runtimeBackend(runtime)` adapts the real runtime; `createCoreBackend()`
//   runs the pure engine core in-process (tests, bench, or a runtime-less single node).
// - Funds: buy-order holds and balances. `ledgerFunds(ledger)` adapts ledger/ledger.ts.
import { withFields } from '../schema/objects.js';
import { ZoneEngine } from '../engine/index.js';
import type { Command, ConfigureZoneCommand, EngineEvent, EngineSnapshot, PlaceCommand } from '../engine/index.js';
import type { FeeSchedule, Ledger } from '../ledger/ledger.js';
import { fail, type Failure } from './codes.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A command as the gateway submits it (the sequencer stamps ts_ms and, for PLACE, the order id). */
export type SubmitCommand = DistributiveOmit<Exclude<Command, PlaceCommand>, 'ts_ms'> | Omit<PlaceCommand, 'ts_ms' | 'order_id'>;

export type SubmitResult =
  | { ok: true; zone_id: number; seq: number; ts_ms: number; order_id?: number; events: EngineEvent[] }
  | { ok: false; code: string; message: string };

export interface CommittedEvents {
  zone_id: number;
  seq: number;
  ts_ms: number;
  events: EngineEvent[];
}

export interface TradingBackend {
  submit(zone_id: number, cmd: SubmitCommand): Promise<SubmitResult>;
  /** Every committed command of every zone, in seq order per zone. */
  subscribeAll(fn: (c: CommittedEvents) => void): () => void;
  /** A zone's engine state (open orders, config) for the publisher's initial books. */
  dump(zone_id: number): Promise<{ state: EngineSnapshot }>;
  zones(): number[];
  /** Starts running a zone created after start-up; true when it runs here. (The runtime's addZone.) */
  startZone?(zone_id: number): Promise<boolean>;
}

/** The shape of engine/runtime's Runtime that the adapter uses (kept structural on purpose). */
export interface RuntimeLike {
  submit(zone_id: number, cmd: SubmitCommand): Promise<SubmitResult>;
  subscribeAll(fn: (c: CommittedEvents) => void): () => void;
  dump(zone_id: number): Promise<{ state: EngineSnapshot; state_hash: string }>;
  status(): { zones: { zone_id: number }[] };
  addZone?(zone_id: number): Promise<boolean>;
}

export function runtimeBackend(runtime: RuntimeLike): TradingBackend {
  return {
    submit: (z, c) => runtime.submit(z, c),
    subscribeAll: (fn) => runtime.subscribeAll(fn),
    dump: (z) => runtime.dump(z),
    zones: () => runtime.status().zones.map((z) => z.zone_id),
    startZone: (z) => (runtime.addZone === undefined ? Promise.resolve(false) : runtime.addZone(z)),
  };
}

/** Order ids as the runtime makes them: zone_id × 2^36 + the command's zone sequence. */
export const ZONE_ID_SHIFT = 2 ** 36;
export const zoneOfOrder = (order_id: number): number => Math.floor(order_id / ZONE_ID_SHIFT);
export const globalTradeId = (zone_id: number, trade_id: number): number => zone_id * ZONE_ID_SHIFT + trade_id;

export interface CoreBackend extends TradingBackend {
  engine(zone_id: number): ZoneEngine;
  /** Creates a zone's engine and configures it. */
  addZone(cfg: Omit<ConfigureZoneCommand, 'type' | 'ts_ms'>): void;
  openInterval(zone_id: number, interval_id: number, capacity_wh: number): void;
}

/**
 * The engine core in-process: one ZoneEngine per zone, commands applied synchronously, results
 * "committed" at once (no journal — durability is the runtime's job).
 */
export function createCoreBackend(options: { now?: () => number } = {}): CoreBackend {
  const now = options.now ?? Date.now;
  const engines = new Map<number, { engine: ZoneEngine; seq: number }>();
  const listeners = new Set<(c: CommittedEvents) => void>();
  const run = (zone_id: number, cmd: Command): CommittedEvents => {
    const z = engines.get(zone_id)!;
    const events = z.engine.apply(cmd);
    const c: CommittedEvents = { zone_id, seq: z.seq, ts_ms: cmd.ts_ms, events };
    for (const fn of listeners) fn(c);
    return c;
  };
  return {
    engine(zone_id) {
      const z = engines.get(zone_id);
      if (z === undefined) throw new Error(`no engine for zone ${zone_id}`);
      return z.engine;
    },
    addZone(cfg) {
      engines.set(cfg.zone_id, { engine: new ZoneEngine(cfg.zone_id), seq: 0 });
      const z = engines.get(cfg.zone_id)!;
      z.seq++;
      run(cfg.zone_id, { ...cfg, type: 'CONFIGURE_ZONE', ts_ms: now() });
    },
    openInterval(zone_id, interval_id, capacity_wh) {
      const z = engines.get(zone_id)!;
      z.seq++;
      run(zone_id, { type: 'OPEN_INTERVAL', interval_id, capacity_wh, ts_ms: now() });
    },
    async submit(zone_id, cmd) {
      const z = engines.get(zone_id);
      if (z === undefined) return { ok: false, code: 'UNKNOWN_ZONE', message: `zone ${zone_id} is not run here` };
      z.seq++;
      const ts_ms = now();
      // withFields, not `{ ...cmd, ts_ms }` (a slow V8 path on Node 20: schema/objects.ts)
      const order_id = cmd.type === 'PLACE' ? zone_id * ZONE_ID_SHIFT + z.seq : undefined;
      const full = order_id === undefined ? withFields(cmd, { ts_ms }) : withFields(cmd, { ts_ms, order_id });
      const c = run(zone_id, full as unknown as Command);
      return { ok: true, zone_id, seq: c.seq, ts_ms, order_id, events: c.events };
    },
    subscribeAll(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async dump(zone_id) {
      return { state: this.engine(zone_id).serialize() };
    },
    zones: () => [...engines.keys()],
  };
}

// ------------------------------------------------------------------------------------------
// Funds

export interface BalanceView {
  currency: string;
  minor_units: number;
  available_minor: bigint;
  held_minor: bigint;
  escrow_minor: bigint;
}

export interface Funds {
  /** Holds the most a BUY can cost before it reaches the engine; a Failure (INSUFFICIENT_FUNDS, …) keeps it out. */
  reserve(r: { user_id: number; client_order_id: string; zone_id: number; price_ticks: number; qty_wh: number }): Failure | null;
  /** The order never reached the engine (runtime error): give the reservation back. */
  unreserve(user_id: number, client_order_id: string): void;
  /** An amend may not need more than the hold has. */
  checkAmend(order_id: number, price_ticks: number | undefined, qty_wh: number | undefined): Failure | null;
  /**
   * Applies committed events (binds holds, fills to escrow, releases) exactly once per (zone, seq):
   * a seq at or below the zone's last applied one changes nothing. Applying the same object twice
   * returns the first call's answer. Returns users whose balances changed.
   */
  apply(c: CommittedEvents): Set<number>;
  balances(user_id: number): BalanceView[];
  deposit(r: { transfer_id: string; user_id: number; currency: string; amount_minor: bigint }): Failure | null;
  withdraw(r: { transfer_id: string; user_id: number; currency: string; amount_minor: bigint }): Failure | null;
  /**
   * null when every change made so far is durable (or nothing is persisted); otherwise a promise
   * that resolves once a ledger flush holding every change made so far has committed (rejects if
   * the flush failed). Many callers in one event-loop turn share one flush.
   */
  durable(): Promise<void> | null;
  /**
   * An operator stored a fee schedule (POST /admin/fees): the ledger charges it from its
   * effective time on, without a restart. Holds use the schedule in force when the order is placed,
   * fills the one in force at the trade's journal time (docs/ledger.md).
   */
  setFeeSchedule(s: FeeSchedule): void;
}

/** Funds that never refuse (no ledger attached): balances are empty. */
export function unlimitedFunds(): Funds {
  return {
    reserve: () => null,
    unreserve: () => {},
    checkAmend: () => null,
    apply: () => new Set(),
    balances: () => [],
    deposit: () => fail('EXCHANGE_UNAVAILABLE', 'no ledger is attached to this gateway'),
    withdraw: () => fail('EXCHANGE_UNAVAILABLE', 'no ledger is attached to this gateway'),
    durable: () => null,
    setFeeSchedule: () => {},
  };
}

type LedgerLike = Pick<Ledger, 'holdBuyOrder' | 'fillBuyOrder' | 'releaseBuyOrder' | 'balances' | 'openUserAccounts' | 'zone' | 'deposit' | 'withdraw' | 'holds' | 'escrows' | 'setFeeSchedule' | 'bindHold'>;

function ledgerFailure(err: unknown): Failure {
  const e = err as { code?: string; message?: string };
  return fail(typeof e.code === 'string' ? e.code : 'INTERNAL', e.message ?? String(err));
}

/**
 * Hold ids below 2^36 are gateway holds ("zone 0": engine order ids are zone_id × 2^36 + seq with
 * zone_id ≥ 1, so the two ranges never meet). A BUY is held under such an id before it is
 * submitted; when its ACCEPTED event commits the hold is moved to the engine's order id.
 */
export const GATEWAY_HOLD_ID_LIMIT = ZONE_ID_SHIFT;
export const isGatewayHoldId = (id: number): boolean => id < GATEWAY_HOLD_ID_LIMIT;

export interface LedgerFundsOptions {
  minorUnits?: (currency: string) => number;
  /** Currencies a user may hold balances in (the zones' currencies). */
  currencies?: () => readonly string[];
  now?: () => number;
  /** Writes the ledger's changes so far (LedgerStore.flush). Without it nothing waits for durability. */
  flush?: () => Promise<unknown>;
  /** A committed BUY whose hold could not be moved to its order id (the zone's fee went up and the buyer lacks the difference). */
  onUnfunded?: (zone_id: number, order_id: number, user_id: number) => void;
  log?: { warn(msg: string, fields?: Record<string, unknown>): void; error(msg: string, fields?: Record<string, unknown>): void };
}

export interface LedgerFunds extends Funds {
  /** Journal replay at start-up: like apply(), and ACCEPTED buys find their gateway hold by (user, zone, price, qty). */
  replay(c: CommittedEvents): void;
  /** Last applied seq per zone. */
  applied(): Map<number, number>;
  /** Sets a zone's applied seq (from the stored cursor) when nothing has been applied yet. */
  startAt(zone_id: number, seq: number): void;
  /** Releases every open gateway hold (start-up: no order is in flight, so none of them reached the book). */
  releaseOrphans(): number;
  /**
   * Start-up check against the engine's book: releases open holds of `zone_id` whose order is not
   * resting; returns resting BUY orders that have no hold.
   */
  reconcile(zone_id: number, resting_buys: { order_id: number; user_id: number }[]): { released: number; unfunded: number[] };
}

/**
 * Adapts the ledger. The ledger keys a hold by order id, which the sequencer assigns only when the
 * order is sequenced; so the hold is taken under a gateway hold id (< 2^36) before submission and
 * moved to the engine's order id (the ledger's bindHold: same amount and pricing snapshot, one step, so in
 * one ledger flush) when the ACCEPTED event commits. The binding therefore lives in the ledger and
 * survives a restart; gateway holds still open at start-up never reached the book (see
 * gateway/ledger-sync.ts). Every effect is idempotent: transfer ids derive from the order id and the
 * zone-global trade id.
 */
export function ledgerFunds(ledger: LedgerLike, options: LedgerFundsOptions = {}): LedgerFunds {
  const now = options.now ?? Date.now;
  const minorUnits = options.minorUnits ?? (() => 2);
  const log = options.log;
  let nextHoldId = 1;
  for (const id of ledger.holds.keys()) if (isGatewayHoldId(id) && id >= nextHoldId) nextHoldId = id + 1;
  const pending = new Map<string, number>(); // `${user}:${coid}` → gateway hold id (live orders in flight)
  const openGatewayHolds = new Map<string, number[]>(); // `${user}:${zone}:${price}:${qty}` → open gateway hold ids (replay)
  const paramKey = (user_id: number, zone_id: number, price: number, qty: number): string => `${user_id}:${zone_id}:${price}:${qty}`;
  for (const h of ledger.holds.values()) {
    if (!isGatewayHoldId(h.order_id) || h.status !== 'OPEN') continue;
    const k = paramKey(h.user_id, h.zone_id, h.limit_price_ticks, h.qty_wh);
    const list = openGatewayHolds.get(k);
    if (list === undefined) openGatewayHolds.set(k, [h.order_id]);
    else list.push(h.order_id);
  }
  for (const list of openGatewayHolds.values()) list.sort((a, b) => a - b);
  const dropGatewayHold = (hold_id: number): void => {
    const h = ledger.holds.get(hold_id);
    if (h === undefined) return;
    const k = paramKey(h.user_id, h.zone_id, h.limit_price_ticks, h.qty_wh);
    const list = openGatewayHolds.get(k);
    if (list === undefined) return;
    const i = list.indexOf(hold_id);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) openGatewayHolds.delete(k);
  };
  const currencies = new Map<number, Set<string>>(); // user → currencies used
  for (const h of ledger.holds.values()) noteCurrencyIn(currencies, h.user_id, h.pricing.currency);
  const noteCurrency = (user_id: number, currency: string): void => noteCurrencyIn(currencies, user_id, currency);
  /** Opens a user's accounts in a currency once per process (the ledger's call is idempotent but not free; accounts are never closed). */
  const ensureAccounts = (user_id: number, currency: string): void => {
    if (currencies.get(user_id)?.has(currency) === true) return;
    ledger.openUserAccounts(user_id, currency, now());
    noteCurrency(user_id, currency);
  };
  const applied = new Map<number, number>(); // zone → last applied seq
  // Each committed command's answer, for a second apply() of the same object (the ledger sync and
  // the publisher both apply it): kept on the object under a symbol (a WeakMap insert per command
  // was 1.5 % of the gateway bench's server thread with --ledger); a WeakMap for frozen objects.
  // The symbol is this instance's own: another ledgerFunds applying the same object keeps its answer apart.
  const APPLIED = Symbol('kwx.funds.applied');
  type Answered = CommittedEvents & { [APPLIED]?: Set<number> };
  const results = new WeakMap<CommittedEvents, Set<number>>();
  const answerOf = (c: CommittedEvents): Set<number> | undefined => (Object.isExtensible(c) ? (c as Answered)[APPLIED] : results.get(c));
  const remember = (c: CommittedEvents, out: Set<number>): void => {
    if (Object.isExtensible(c)) (c as Answered)[APPLIED] = out;
    else results.set(c, out);
  };

  // ---- durability: one flush for every caller of a turn ----
  let mutations = 0;
  let durableThrough = 0;
  const inflight: { upTo: number; p: Promise<void> }[] = [];
  let scheduled: Promise<void> | null = null;
  const changed = (): void => {
    mutations++;
  };
  const startFlush = (): Promise<void> => {
    const upTo = mutations;
    const p = Promise.resolve()
      .then(() => options.flush!())
      .then(() => {
        if (upTo > durableThrough) durableThrough = upTo;
      });
    const entry = { upTo, p };
    inflight.push(entry);
    const done = (): void => {
      const i = inflight.indexOf(entry);
      if (i >= 0) inflight.splice(i, 1);
    };
    p.then(done, done);
    return p;
  };
  const durable = (): Promise<void> | null => {
    if (options.flush === undefined || durableThrough >= mutations) return null;
    for (const f of inflight) if (f.upTo >= mutations) return f.p;
    if (scheduled === null) {
      // Every change made in this turn joins the flush taken at the start of the next one.
      scheduled = new Promise<void>((resolve, reject) => {
        setImmediate(() => {
          scheduled = null;
          startFlush().then(resolve, reject);
        });
      });
    }
    return scheduled;
  };

  const unbound = new Map<number, number>(); // engine order id → gateway hold id (its move failed; the order is being cancelled)
  const holdOf = (order_id: number) => ledger.holds.get(unbound.get(order_id) ?? order_id);
  const release = (order_id: number, reason: 'CANCELLED' | 'EXPIRED', out: Set<number>): void => {
    const h = holdOf(order_id);
    unbound.delete(order_id);
    if (h === undefined || h.status !== 'OPEN') return;
    ledger.releaseBuyOrder({ order_id: h.order_id, reason }, now());
    changed();
    if (isGatewayHoldId(h.order_id)) dropGatewayHold(h.order_id);
    out.add(h.user_id);
  };

  /** Moves a BUY's gateway hold to its engine order id (or nothing when already done). */
  const bind = (zone_id: number, e: Extract<EngineEvent, { type: 'ACCEPTED' }>, replaying: boolean, out: Set<number>): void => {
    const key = `${e.user_id}:${e.client_order_id}`;
    const live = pending.get(key);
    if (ledger.holds.has(e.order_id)) {
      // Already bound (a replayed event, or a retry).
      return;
    }
    let hold_id = live;
    if (hold_id !== undefined) pending.delete(key);
    else if (replaying) hold_id = openGatewayHolds.get(paramKey(e.user_id, zone_id, e.price_ticks, e.qty_wh))?.[0];
    if (hold_id === undefined) return; // not held by a gateway (e.g. placed while no ledger was attached)
    const h = ledger.holds.get(hold_id);
    if (h === undefined || h.status !== 'OPEN') return;
    try {
      // The ledger's own atomic move: same amount and the pricing snapshot of the order's time (a fee
      // change since then does not touch it: the buyer is charged at most the fee it was held for),
      // idempotent, and never refused by the store's outage gate (not a new commitment).
      ledger.bindHold({ from_order_id: hold_id, to_order_id: e.order_id }, now());
    } catch (err) {
      // Cannot happen for a hold made here (HOLD_EXISTS, …); the order must not trade unheld.
      log?.error('ledger: hold could not move to its order id; cancelling the order', { order_id: e.order_id, user_id: e.user_id, error: (err as Error).message });
      // Until its cancel commits, the order's fills draw on the gateway hold if that is still open.
      if (ledger.holds.get(hold_id)?.status === 'OPEN') unbound.set(e.order_id, hold_id);
      changed();
      options.onUnfunded?.(zone_id, e.order_id, e.user_id);
      return;
    } finally {
      if (ledger.holds.get(hold_id)?.status !== 'OPEN') dropGatewayHold(hold_id);
    }
    changed();
    out.add(e.user_id);
  };

  const applyEvents = (c: CommittedEvents, replaying: boolean): Set<number> => {
    const cached = answerOf(c);
    if (cached !== undefined) return cached;
    const out = new Set<number>();
    const last = applied.get(c.zone_id);
    if (last !== undefined && c.seq <= last) {
      remember(c, out);
      return out;
    }
    applied.set(c.zone_id, c.seq);
    for (const e of c.events) {
      try {
        switch (e.type) {
          case 'ACCEPTED':
            if (e.side === 'BUY') bind(c.zone_id, e, replaying, out);
            break;
          case 'REJECTED': {
            if (e.command !== 'PLACE') break;
            const key = `${e.user_id}:${e.client_order_id}`;
            const hold_id = pending.get(key);
            if (hold_id !== undefined) {
              pending.delete(key);
              release(hold_id, 'CANCELLED', out);
            }
            break;
          }
          case 'FILL': {
            const buy_order = e.taker_side === 'BUY' ? e.taker_order_id : e.maker_order_id;
            const seller_id = e.taker_side === 'BUY' ? e.maker_user_id : e.taker_user_id;
            const buy_remaining = e.taker_side === 'BUY' ? e.taker_remaining_wh : e.maker_remaining_wh;
            const h = holdOf(buy_order);
            if (h === undefined) break;
            const trade_id = globalTradeId(c.zone_id, e.trade_id);
            if (h.status === 'OPEN' || ledger.escrows.has(trade_id)) {
              ensureAccounts(seller_id, h.pricing.currency);
              ledger.fillBuyOrder(
                // The fee charged is the one in force at the trade's journal time (also on a replay after a restart).
                { trade_id, order_id: h.order_id, seller_id, price_ticks: e.price_ticks, qty_wh: e.qty_wh, interval_id: e.interval_id, source: e.source, traded_at_ms: c.ts_ms },
                now(),
              );
              changed();
              out.add(h.user_id);
              out.add(seller_id);
            }
            // An order amended down keeps its original hold; release what is left when it is done.
            if (buy_remaining === 0) release(buy_order, 'CANCELLED', out);
            break;
          }
          case 'CANCELLED':
            release(e.order_id, 'CANCELLED', out);
            break;
          case 'EXPIRED':
            release(e.order_id, 'EXPIRED', out);
            break;
          default:
            break;
        }
      } catch (err) {
        log?.error('ledger: a committed event could not be applied', { zone_id: c.zone_id, seq: c.seq, event: e.type, error: (err as Error).message });
      }
    }
    remember(c, out);
    return out;
  };

  return {
    reserve(r) {
      const key = `${r.user_id}:${r.client_order_id}`;
      if (pending.has(key)) return fail('DUPLICATE_CLIENT_ORDER_ID', `client order id "${r.client_order_id}" is already in flight`);
      try {
        ensureAccounts(r.user_id, ledger.zone(r.zone_id).currency);
        const hold_id = nextHoldId++;
        ledger.holdBuyOrder({ order_id: hold_id, user_id: r.user_id, zone_id: r.zone_id, limit_price_ticks: r.price_ticks, qty_wh: r.qty_wh }, now());
        changed();
        pending.set(key, hold_id);
        const k = paramKey(r.user_id, r.zone_id, r.price_ticks, r.qty_wh);
        const list = openGatewayHolds.get(k);
        if (list === undefined) openGatewayHolds.set(k, [hold_id]);
        else list.push(hold_id);
        return null;
      } catch (err) {
        return ledgerFailure(err);
      }
    },
    unreserve(user_id, client_order_id) {
      const key = `${user_id}:${client_order_id}`;
      const hold_id = pending.get(key);
      if (hold_id === undefined) return;
      pending.delete(key);
      try {
        release(hold_id, 'CANCELLED', new Set());
      } catch (err) {
        log?.error('ledger: a reservation could not be released', { hold_id, error: (err as Error).message });
      }
    },
    checkAmend(order_id, price_ticks, qty_wh) {
      const h = holdOf(order_id);
      if (h === undefined || isGatewayHoldId(order_id)) return null; // a SELL, or not ours: the engine decides
      if ((price_ticks !== undefined && price_ticks > h.limit_price_ticks) || (qty_wh !== undefined && qty_wh > h.qty_wh)) {
        return fail('INSUFFICIENT_FUNDS', 'an amend may not raise a buy order above the price or quantity held when it was placed; cancel and place a new order');
      }
      return null;
    },
    apply: (c) => applyEvents(c, false),
    replay(c) {
      applyEvents(c, true);
    },
    applied: () => new Map(applied),
    startAt(zone_id, seq) {
      if (!applied.has(zone_id)) applied.set(zone_id, seq);
    },
    releaseOrphans() {
      let n = 0;
      for (const list of [...openGatewayHolds.values()]) {
        for (const hold_id of [...list]) {
          try {
            release(hold_id, 'CANCELLED', new Set());
            n++;
          } catch (err) {
            log?.error('ledger: an orphaned gateway hold could not be released', { hold_id, error: (err as Error).message });
          }
        }
      }
      pending.clear();
      return n;
    },
    reconcile(zone_id, resting_buys) {
      const resting = new Set(resting_buys.map((o) => o.order_id));
      let released = 0;
      for (const h of [...ledger.holds.values()]) {
        if (h.status !== 'OPEN' || isGatewayHoldId(h.order_id) || zoneOfOrder(h.order_id) !== zone_id || resting.has(h.order_id)) continue;
        try {
          release(h.order_id, 'CANCELLED', new Set());
          released++;
        } catch (err) {
          log?.error('ledger: a stale hold could not be released', { order_id: h.order_id, error: (err as Error).message });
        }
      }
      const unfunded = resting_buys.filter((o) => ledger.holds.get(o.order_id)?.status !== 'OPEN').map((o) => o.order_id);
      return { released, unfunded };
    },
    balances(user_id) {
      const out: BalanceView[] = [];
      const all = new Set(currencies.get(user_id) ?? []);
      for (const c of options.currencies?.() ?? []) all.add(c);
      for (const currency of all) {
        try {
          const b = ledger.balances(user_id, currency);
          out.push({ currency, minor_units: minorUnits(currency), available_minor: b.available_minor, held_minor: b.held_minor, escrow_minor: b.escrow_minor });
        } catch {
          // no accounts in this currency
        }
      }
      return out;
    },
    deposit(r) {
      try {
        ledger.openUserAccounts(r.user_id, r.currency, now());
        noteCurrency(r.user_id, r.currency);
        ledger.deposit(r, now());
        changed();
        return null;
      } catch (err) {
        return ledgerFailure(err);
      }
    },
    withdraw(r) {
      try {
        ledger.withdraw(r, now());
        changed();
        return null;
      } catch (err) {
        return ledgerFailure(err);
      }
    },
    durable,
    setFeeSchedule(sched) {
      ledger.setFeeSchedule(sched);
    },
  };
}

function noteCurrencyIn(currencies: Map<number, Set<string>>, user_id: number, currency: string): void {
  let s = currencies.get(user_id);
  if (s === undefined) currencies.set(user_id, (s = new Set()));
  s.add(currency);
}
