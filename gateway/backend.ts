// The narrow interfaces the gateway needs from the engine runtime and the ledger, and adapters:
// - TradingBackend: the runtime's internal API (engine/runtime: submit → committed result,
//   committed events). `runtimeBackend(runtime)` adapts the real runtime; `createCoreBackend()`
//   runs the pure engine core in-process (tests, bench, or a runtime-less single node).
// - Funds: buy-order holds and balances. `ledgerFunds(ledger)` adapts ledger/ledger.ts.
import { ZoneEngine } from '../engine/index.js';
import type { Command, ConfigureZoneCommand, EngineEvent, EngineSnapshot, PlaceCommand } from '../engine/index.js';
import type { Ledger } from '../ledger/ledger.js';
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
}

/** The shape of engine/runtime's Runtime that the adapter uses (kept structural on purpose). */
export interface RuntimeLike {
  submit(zone_id: number, cmd: SubmitCommand): Promise<SubmitResult>;
  subscribeAll(fn: (c: CommittedEvents) => void): () => void;
  dump(zone_id: number): Promise<{ state: EngineSnapshot; state_hash: string }>;
  status(): { zones: { zone_id: number }[] };
}

export function runtimeBackend(runtime: RuntimeLike): TradingBackend {
  return {
    submit: (z, c) => runtime.submit(z, c),
    subscribeAll: (fn) => runtime.subscribeAll(fn),
    dump: (z) => runtime.dump(z),
    zones: () => runtime.status().zones.map((z) => z.zone_id),
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
      const full = (cmd.type === 'PLACE' ? { ...cmd, ts_ms, order_id: zone_id * ZONE_ID_SHIFT + z.seq } : { ...cmd, ts_ms }) as Command;
      const c = run(zone_id, full);
      return { ok: true, zone_id, seq: c.seq, ts_ms, order_id: full.type === 'PLACE' ? full.order_id : undefined, events: c.events };
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
  /** Applies committed events (binds holds, fills to escrow, releases); returns users whose balances changed. */
  apply(c: CommittedEvents): Set<number>;
  balances(user_id: number): BalanceView[];
  deposit(r: { transfer_id: string; user_id: number; currency: string; amount_minor: bigint }): Failure | null;
  withdraw(r: { transfer_id: string; user_id: number; currency: string; amount_minor: bigint }): Failure | null;
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
  };
}

type LedgerLike = Pick<Ledger, 'holdBuyOrder' | 'fillBuyOrder' | 'releaseBuyOrder' | 'balances' | 'openUserAccounts' | 'zone' | 'deposit' | 'withdraw' | 'holds'>;

function ledgerFailure(err: unknown): Failure {
  const e = err as { code?: string; message?: string };
  return fail(typeof e.code === 'string' ? e.code : 'INTERNAL', e.message ?? String(err));
}

/**
 * Adapts the ledger. The ledger keys a hold by order id, which the sequencer assigns only when the
 * order is sequenced; so the hold is taken under a gateway hold id before submission and bound
 * to the engine's order id when the ACCEPTED event (same user + client order id) arrives.
 * Hold ids start at the process start time × 1000 so that restarts do not reuse them.
 */
export function ledgerFunds(ledger: LedgerLike, options: { minorUnits?: (currency: string) => number; now?: () => number } = {}): Funds {
  const now = options.now ?? Date.now;
  const minorUnits = options.minorUnits ?? (() => 2);
  let nextHoldId = Date.now() * 1000;
  const pending = new Map<string, number>(); // `${user}:${coid}` → hold id
  const bound = new Map<number, number>(); // engine order id → hold id
  const currencies = new Map<number, Set<string>>(); // user → currencies used
  const noteCurrency = (user_id: number, currency: string): void => {
    let s = currencies.get(user_id);
    if (s === undefined) currencies.set(user_id, (s = new Set()));
    s.add(currency);
  };
  const holdOf = (order_id: number) => {
    const h = bound.get(order_id);
    return h === undefined ? undefined : ledger.holds.get(h);
  };
  const release = (order_id: number, reason: 'CANCELLED' | 'EXPIRED', changed: Set<number>): void => {
    const h = holdOf(order_id);
    if (h === undefined) return;
    if (h.status === 'OPEN') ledger.releaseBuyOrder({ order_id: h.order_id, reason }, now());
    bound.delete(order_id);
    changed.add(h.user_id);
  };
  return {
    reserve(r) {
      const key = `${r.user_id}:${r.client_order_id}`;
      if (pending.has(key)) return fail('DUPLICATE_CLIENT_ORDER_ID', `client order id "${r.client_order_id}" is already in flight`);
      try {
        const currency = ledger.zone(r.zone_id).currency;
        ledger.openUserAccounts(r.user_id, currency, now());
        noteCurrency(r.user_id, currency);
        const hold_id = nextHoldId++;
        ledger.holdBuyOrder({ order_id: hold_id, user_id: r.user_id, zone_id: r.zone_id, limit_price_ticks: r.price_ticks, qty_wh: r.qty_wh }, now());
        pending.set(key, hold_id);
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
      ledger.releaseBuyOrder({ order_id: hold_id, reason: 'CANCELLED' }, now());
    },
    checkAmend(order_id, price_ticks, qty_wh) {
      const h = holdOf(order_id);
      if (h === undefined) return null; // a SELL, or not ours: the engine decides
      if ((price_ticks !== undefined && price_ticks > h.limit_price_ticks) || (qty_wh !== undefined && qty_wh > h.qty_wh)) {
        return fail('INSUFFICIENT_FUNDS', 'an amend may not raise a buy order above the price or quantity held when it was placed; cancel and place a new order');
      }
      return null;
    },
    apply(c) {
      const changed = new Set<number>();
      for (const e of c.events) {
        switch (e.type) {
          case 'ACCEPTED': {
            const key = `${e.user_id}:${e.client_order_id}`;
            const hold_id = pending.get(key);
            if (hold_id !== undefined && e.side === 'BUY') {
              pending.delete(key);
              bound.set(e.order_id, hold_id);
              changed.add(e.user_id);
            }
            break;
          }
          case 'REJECTED': {
            if (e.command !== 'PLACE') break;
            const key = `${e.user_id}:${e.client_order_id}`;
            const hold_id = pending.get(key);
            if (hold_id !== undefined) {
              pending.delete(key);
              ledger.releaseBuyOrder({ order_id: hold_id, reason: 'CANCELLED' }, now());
              changed.add(e.user_id);
            }
            break;
          }
          case 'FILL': {
            const buy_order = e.taker_side === 'BUY' ? e.taker_order_id : e.maker_order_id;
            const seller_id = e.taker_side === 'BUY' ? e.maker_user_id : e.taker_user_id;
            const buy_remaining = e.taker_side === 'BUY' ? e.taker_remaining_wh : e.maker_remaining_wh;
            const h = holdOf(buy_order);
            if (h === undefined) break;
            ledger.openUserAccounts(seller_id, h.pricing.currency, now());
            noteCurrency(seller_id, h.pricing.currency);
            ledger.fillBuyOrder(
              { trade_id: globalTradeId(c.zone_id, e.trade_id), order_id: h.order_id, seller_id, price_ticks: e.price_ticks, qty_wh: e.qty_wh, interval_id: e.interval_id, source: e.source },
              now(),
            );
            changed.add(h.user_id);
            changed.add(seller_id);
            // An order amended down keeps its original hold; release what is left when it is done.
            if (buy_remaining === 0) release(buy_order, 'CANCELLED', changed);
            break;
          }
          case 'CANCELLED':
            release(e.order_id, 'CANCELLED', changed);
            break;
          case 'EXPIRED':
            release(e.order_id, 'EXPIRED', changed);
            break;
          default:
            break;
        }
      }
      return changed;
    },
    balances(user_id) {
      const out: BalanceView[] = [];
      for (const currency of currencies.get(user_id) ?? []) {
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
        return null;
      } catch (err) {
        return ledgerFailure(err);
      }
    },
    withdraw(r) {
      try {
        ledger.withdraw(r, now());
        return null;
      } catch (err) {
        return ledgerFailure(err);
      }
    },
  };
}
