/**
 * The ledger's trading flows on top of the core: wallets per user and currency (AVAILABLE, HELD,
 * ESCROW), platform accounts (FEES, ROUNDING, EXTERNAL), buy-order holds, trade escrow,
 * settlement with fees and refunds, disputes, deposits and withdrawals, carbon certificates.
 *
 * Single writer: one Ledger instance owns the state; every method is synchronous, deterministic
 * and takes the time as `now_ms`. A method either applies completely or throws a LedgerError and
 * changes nothing. Every method is idempotent: its transfer ids derive from the order or trade id
 * (or are given by the caller), so calling it again with the same arguments returns the original
 * result and changes nothing; the same id with different arguments is DUPLICATE_TRANSFER.
 */
import { createHash } from 'node:crypto';
import {
  availableOf, balanceOf, LedgerCore, PLATFORM_ACCOUNT_KINDS, TRANSFER_FLAG_PENDING, TRANSFER_FLAG_POST_PENDING,
  TRANSFER_FLAG_VOID_PENDING, USER_ACCOUNT_KINDS, type Account, type AccountKind, type CoreRecorder, type PendingState,
  type Transfer, type TransferInput,
} from './core.js';
import { withFields } from '../schema/objects.js';
import { assert, LedgerError } from './errors.js';
import { buyerFeeFactors, buyerMaxMinor, pricingFactors, settlementAmounts, type Pricing, type PricingFactors } from './money.js';
import {
  CertificateRegistry, certificateIdForTrade, isRenewable, TRADE_SOURCES, type Certificate, type CertificateEvent, type ChainVerdict,
  type TradeSource,
} from './certificates.js';

export interface ZoneConfig extends Pricing {
  readonly zone_id: number;
}

/** MOVED: the hold moved to another order id (bindHold); it holds nothing any more. */
export type HoldStatus = 'OPEN' | 'FILLED' | 'CANCELLED' | 'EXPIRED' | 'MOVED';

export interface OrderHold {
  readonly order_id: number;
  readonly user_id: number;
  readonly zone_id: number;
  readonly pricing: Pricing;
  readonly limit_price_ticks: number;
  readonly qty_wh: number;
  /** What was held when the order was placed. */
  readonly held_minor: bigint;
  remaining_wh: number;
  /** Still held for the unfilled quantity. */
  remaining_minor: bigint;
  status: HoldStatus;
  /** Released by cancel or expiry (0 until then). */
  released_on_close_minor: bigint;
  /** Set when the hold moved to another order id (status MOVED). */
  moved_to_order_id: number | null;
  /** The hold this one was moved from (bindHold), or null. */
  readonly bound_from_order_id: number | null;
  readonly created_at_ms: number;
  updated_at_ms: number;
}

export type EscrowStatus = 'HELD' | 'DISPUTED' | 'SETTLED' | 'CANCELLED';

export interface TradeEscrow {
  readonly trade_id: number;
  readonly order_id: number;
  readonly buyer_id: number;
  readonly seller_id: number;
  readonly zone_id: number;
  readonly interval_id: number;
  readonly source: TradeSource;
  readonly price_ticks: number;
  readonly qty_wh: number;
  /** The buyer's hold's pricing (order time). */
  readonly pricing: Pricing;
  /** The same with the fee schedule in force at trade time: the fee charged (the buyer's side capped by `pricing`'s). */
  readonly trade_pricing: Pricing;
  readonly escrow_minor: bigint;
  /** Released to the buyer at the fill: hold at the limit price minus escrow at the trade price. */
  readonly released_minor: bigint;
  status: EscrowStatus;
  dispute_reason: string | null;
  readonly created_at_ms: number;
  updated_at_ms: number;
}

export type SettlementResolution = 'VERIFIED' | 'DISPUTE_RESOLVED' | 'CANCELLED';

export interface Settlement {
  readonly trade_id: number;
  readonly delivered_wh: number;
  readonly buyer_paid_minor: bigint;
  readonly seller_net_minor: bigint;
  readonly fee_minor: bigint;
  readonly rounding_minor: bigint;
  readonly refund_minor: bigint;
  readonly certificate_id: string | null;
  readonly resolution: SettlementResolution;
  readonly settled_at_ms: number;
}

export interface Balances {
  readonly available_minor: bigint;
  readonly held_minor: bigint;
  readonly escrow_minor: bigint;
  /** Part of the available account reserved by pending withdrawals (already excluded above). */
  readonly pending_withdrawal_minor: bigint;
}

export interface HoldRequest { order_id: number; user_id: number; zone_id: number; limit_price_ticks: number; qty_wh: number }
export interface HoldResult { order_id: number; held_minor: bigint }
export interface BindRequest { from_order_id: number; to_order_id: number }
export interface BindResult { from_order_id: number; order_id: number; held_minor: bigint }
export interface FillRequest {
  trade_id: number; order_id: number; seller_id: number; price_ticks: number; qty_wh: number; interval_id: number; source: TradeSource;
  /** When the trade happened (input clock); picks the fee schedule charged. Default: now_ms of the call. */
  traded_at_ms?: number;
}

/** A platform fee schedule: in force from `effective_from_ms` until the next one (per zone; zone_id null = platform default). */
export interface FeeSchedule { zone_id: number | null; effective_from_ms: number; fee_bps: number; fee_per_kwh_minor: bigint }
/** The fee in force for a zone at a time, and where it comes from. */
export interface FeeInForce { fee_bps: number; fee_per_kwh_minor: bigint; source: 'ZONE_SCHEDULE' | 'PLATFORM_SCHEDULE' | 'ZONE_CONFIG'; effective_from_ms: number | null }
export interface FillResult { trade_id: number; escrow_minor: bigint; released_minor: bigint }
export interface ReleaseRequest { order_id: number; reason: 'CANCELLED' | 'EXPIRED' }
export interface ReleaseResult { order_id: number; released_minor: bigint }
export interface MoneyRequest { transfer_id: string; user_id: number; currency: string; amount_minor: bigint }

/** What changed since the last takeChanges(): the persistence layer writes it in one batch. */
export class ChangeSet {
  readonly accounts: Account[] = [];
  readonly transfers: Transfer[] = [];
  readonly touched = new Set<Account>();
  readonly pendings = new Set<PendingState>();
  readonly holds = new Set<OrderHold>();
  readonly escrows = new Set<TradeEscrow>();
  readonly settlements: Settlement[] = [];
  readonly certificates = new Set<Certificate>();
  readonly certificate_events: CertificateEvent[] = [];

  /** Rows this change set would write (a backlog measure for the store). */
  get rows(): number {
    return this.accounts.length + this.transfers.length + this.touched.size + this.pendings.size + this.holds.size + this.escrows.size +
      this.settlements.length + this.certificates.size + this.certificate_events.length;
  }

  get empty(): boolean {
    return this.accounts.length === 0 && this.transfers.length === 0 && this.touched.size === 0 && this.pendings.size === 0 &&
      this.holds.size === 0 && this.escrows.size === 0 && this.settlements.length === 0 && this.certificates.size === 0 &&
      this.certificate_events.length === 0;
  }
}

function recorderOf(c: ChangeSet): CoreRecorder {
  return {
    account: (a) => c.accounts.push(a),
    transfer: (t) => c.transfers.push(t),
    touched: (a) => c.touched.add(a),
    pending: (s) => c.pendings.add(s),
    untransfer: (t) => {
      assert(c.transfers[c.transfers.length - 1] === t, 'a rolled back transfer is the last one recorded');
      c.transfers.pop();
      // A rolled-back pending transfer must not be written either.
      if (t.flags === TRANSFER_FLAG_PENDING) for (const p of c.pendings) if (p.transfer === t) c.pendings.delete(p);
    },
  };
}

interface Zone { config: ZoneConfig; pricing: Pricing; factors: PricingFactors }

/** The pricing fields only, in a fixed order (holds snapshot it; storage round-trips it). */
export function pricingOf(p: Pricing): Pricing {
  return { currency: p.currency, minor_units: p.minor_units, tick_size: p.tick_size, fee_bps: p.fee_bps, fee_per_kwh_minor: p.fee_per_kwh_minor };
}

/** Dispute reasons are cut to this length. */
export const MAX_DISPUTE_REASON_LENGTH = 500;

const SAFE_ID = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

function requireId(name: string, v: unknown): number {
  if (!SAFE_ID(v)) throw new LedgerError('INVALID_TRANSFER', `${name} must be a positive safe integer, got ${String(v)}`);
  return v;
}

function requireZoneId(v: unknown): number {
  if (!SAFE_ID(v)) throw new LedgerError('INVALID_ZONE', `zone_id must be a positive safe integer, got ${String(v)}`);
  return v;
}

function requirePrice(v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new LedgerError('INVALID_AMOUNT', `price_ticks must be a safe integer, got ${String(v)}`);
  if (v < 0) throw new LedgerError('NEGATIVE_PRICE_UNSUPPORTED', `the ledger does not settle negative prices yet (${v} ticks)`);
  return v;
}

function requireQty(name: string, v: unknown, allowZero = false): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) {
    throw new LedgerError('INVALID_AMOUNT', `${name} must be a ${allowZero ? 'non-negative' : 'positive'} safe integer of Wh, got ${String(v)}`);
  }
  return v;
}

function requireAmount(v: unknown): bigint {
  if (typeof v !== 'bigint' || v <= 0n) throw new LedgerError('INVALID_AMOUNT', `amount_minor must be a positive bigint`);
  return v;
}

export class Ledger {
  readonly core = new LedgerCore();
  readonly certificates = new CertificateRegistry();
  readonly holds = new Map<number, OrderHold>();
  readonly escrows = new Map<number, TradeEscrow>();
  readonly settlements = new Map<number, Settlement>();
  /** Σ delivered Wh of settled renewable trades: certificates never exceed it. */
  settled_renewable_wh = 0;
  private readonly zones = new Map<number, Zone>();
  private readonly factorsCache = new Map<string, PricingFactors>();
  /** One Pricing object per distinct pricing (holds and escrows share them). */
  private readonly pricingCache = new Map<string, Pricing>();
  /** Fee schedules per zone (key 0 = platform default), sorted by effective_from_ms. */
  private readonly feeSchedules = new Map<number, FeeSchedule[]>();
  /** Users with accounts (certificates can only go to them). */
  readonly users = new Set<number>();
  private changes: ChangeSet | null = null;
  /**
   * Installed by the persistence layer (LedgerStore): throws EXCHANGE_UNAVAILABLE to refuse a NEW
   * commitment (deposit, withdrawal, buy hold, certificate move, low-level transfers) while
   * PostgreSQL is unreachable and the unwritten backlog is full. Consequences of commitments
   * already made (fills, releases, settlements, disputes, completing a withdrawal) are never
   * refused, so the ledger cannot disagree with the journal of trades.
   */
  private admission: (() => void) | null = null;

  constructor(options: { record_changes?: boolean } = {}) {
    if (options.record_changes === true) this.installChangeSet();
    this.certificates.onEvent = (e, c) => {
      if (this.changes !== null) {
        this.changes.certificate_events.push(e);
        this.changes.certificates.add(c);
      }
    };
  }

  private installChangeSet(): ChangeSet {
    const c = new ChangeSet();
    this.changes = c;
    this.core.recorder = recorderOf(c);
    return c;
  }

  /** Hands over everything changed since the last call (for the persistence layer). */
  takeChanges(): ChangeSet {
    const c = this.changes;
    if (c === null) throw new Error('this ledger was created without record_changes');
    this.installChangeSet();
    return c;
  }

  get recording(): boolean {
    return this.changes !== null;
  }

  /** Rows recorded and not yet taken by takeChanges() (0 when not recording). */
  get unflushed_rows(): number {
    return this.changes?.rows ?? 0;
  }

  /** See `admission`: null removes the gate. */
  setAdmission(gate: (() => void) | null): void {
    this.admission = gate;
  }

  /** Starts recording changes for persistence (after a rebuild from storage). */
  startRecording(): void {
    if (this.changes === null) this.installChangeSet();
  }

  // ---- configuration and accounts ----------------------------------------------------------

  /** Sets (or replaces) a zone's currency, tick and fee; opens the currency's platform accounts. */
  configureZone(zone: ZoneConfig, now_ms: number): void {
    requireId('zone_id', zone.zone_id);
    const factors = pricingFactors(zone);
    this.zones.set(zone.zone_id, { config: { ...zone }, pricing: this.sharedPricing(zone), factors });
    this.openCurrency(zone.currency, now_ms);
  }

  /**
   * Adds a platform fee schedule (or replaces the one with the same zone and effective_from):
   * from `effective_from_ms` until the next schedule, trades in the zone (zone_id null: every zone
   * without a schedule of its own in force) are charged this fee. Configuration, like zones: not
   * persisted by the ledger (load them with loadFeeSchedules()).
   */
  setFeeSchedule(schedule: FeeSchedule): void {
    const zone_id = schedule.zone_id === null ? null : requireZoneId(schedule.zone_id);
    if (!Number.isSafeInteger(schedule.effective_from_ms)) throw new LedgerError('INVALID_ZONE', `effective_from_ms must be a safe integer`);
    // Validates the fee the same way as a zone's.
    pricingFactors({ currency: 'XXX', minor_units: 0, tick_size: '1', fee_bps: schedule.fee_bps, fee_per_kwh_minor: schedule.fee_per_kwh_minor });
    const key = zone_id ?? 0;
    const entry: FeeSchedule = { zone_id, effective_from_ms: schedule.effective_from_ms, fee_bps: schedule.fee_bps, fee_per_kwh_minor: schedule.fee_per_kwh_minor };
    const list = (this.feeSchedules.get(key) ?? []).filter((e) => e.effective_from_ms !== entry.effective_from_ms);
    list.push(entry);
    list.sort((a, b) => a.effective_from_ms - b.effective_from_ms);
    this.feeSchedules.set(key, list);
  }

  /**
   * The fee in force in a zone at `at_ms`: the zone's latest schedule with effective_from ≤ at,
   * else the platform default's, else the fee the zone was configured with. UNKNOWN_ZONE when the
   * zone is not configured.
   */
  feeAt(zone_id: number, at_ms: number): FeeInForce {
    const z = this.zones.get(zone_id);
    if (z === undefined) throw new LedgerError('UNKNOWN_ZONE', `zone ${zone_id} is not configured in the ledger`);
    return this.scheduledFee(zone_id, at_ms) ?? { fee_bps: z.config.fee_bps, fee_per_kwh_minor: z.config.fee_per_kwh_minor, source: 'ZONE_CONFIG', effective_from_ms: null };
  }

  private scheduledFee(zone_id: number, at_ms: number): FeeInForce | null {
    for (const key of [zone_id, 0]) {
      const list = this.feeSchedules.get(key);
      if (list === undefined) continue;
      for (let i = list.length - 1; i >= 0; i--) {
        const e = list[i];
        if (e.effective_from_ms <= at_ms) {
          return { fee_bps: e.fee_bps, fee_per_kwh_minor: e.fee_per_kwh_minor, source: key === 0 ? 'PLATFORM_SCHEDULE' : 'ZONE_SCHEDULE', effective_from_ms: e.effective_from_ms };
        }
      }
    }
    return null;
  }

  /** A shared Pricing object for these values (holds and escrows point at it). */
  private sharedPricing(p: Pricing): Pricing {
    const key = `${p.currency}|${p.minor_units}|${p.tick_size}|${p.fee_bps}|${p.fee_per_kwh_minor}`;
    let shared = this.pricingCache.get(key);
    if (shared === undefined) {
      shared = pricingOf(p);
      this.pricingCache.set(key, shared);
    }
    return shared;
  }

  /** `base` (a zone's or a hold's pricing) with the fee in force at `at_ms`. */
  private pricingAt(zone_id: number, base: Pricing, at_ms: number): Pricing {
    const z = this.zones.get(zone_id);
    const fee = this.scheduledFee(zone_id, at_ms) ?? (z === undefined ? null : { fee_bps: z.config.fee_bps, fee_per_kwh_minor: z.config.fee_per_kwh_minor });
    if (fee === null || (fee.fee_bps === base.fee_bps && fee.fee_per_kwh_minor === base.fee_per_kwh_minor)) return base;
    return this.sharedPricing({ ...base, fee_bps: fee.fee_bps, fee_per_kwh_minor: fee.fee_per_kwh_minor });
  }

  zone(zone_id: number): ZoneConfig {
    const z = this.zones.get(zone_id);
    if (z === undefined) throw new LedgerError('UNKNOWN_ZONE', `zone ${zone_id} is not configured in the ledger`);
    return z.config;
  }

  openCurrency(currency: string, now_ms: number): void {
    if (!/^[A-Z]{3}$/.test(currency)) throw new LedgerError('INVALID_ZONE', `currency "${currency}" is not three capital letters`);
    for (const kind of PLATFORM_ACCOUNT_KINDS) this.core.openAccount(null, currency, kind, now_ms);
  }

  /** Opens a user's AVAILABLE, HELD and ESCROW accounts in a currency (idempotent). */
  openUserAccounts(user_id: number, currency: string, now_ms: number): { available: number; held: number; escrow: number } {
    requireId('user_id', user_id);
    this.openCurrency(currency, now_ms);
    const ids = USER_ACCOUNT_KINDS.map((k) => this.core.openAccount(user_id, currency, k, now_ms).id);
    this.users.add(user_id);
    return { available: ids[0], held: ids[1], escrow: ids[2] };
  }

  /** The id of an account, for the low-level transfer API. Throws ACCOUNT_NOT_FOUND. */
  accountId(user_id: number | null, currency: string, kind: AccountKind): number {
    return this.core.account(user_id, currency, kind).id;
  }

  account(id: number): Account {
    const a = this.core.accounts[id];
    if (a === undefined || id === 0) throw new LedgerError('ACCOUNT_NOT_FOUND', `account ${id} does not exist`);
    return a;
  }

  balances(user_id: number, currency: string): Balances {
    const available = this.core.account(user_id, currency, 'AVAILABLE');
    return {
      available_minor: availableOf(available),
      held_minor: balanceOf(this.core.account(user_id, currency, 'HELD')),
      escrow_minor: balanceOf(this.core.account(user_id, currency, 'ESCROW')),
      pending_withdrawal_minor: available.debits_pending,
    };
  }

  /** Platform balances of a currency; external is minus the money deposited and not withdrawn. */
  platformBalances(currency: string): { fees_minor: bigint; rounding_minor: bigint; external_minor: bigint } {
    return {
      fees_minor: balanceOf(this.core.account(null, currency, 'FEES')),
      rounding_minor: balanceOf(this.core.account(null, currency, 'ROUNDING')),
      external_minor: balanceOf(this.core.account(null, currency, 'EXTERNAL')),
    };
  }

  // ---- low-level transfers -------------------------------------------------------------------

  /** Creates transfers as one linked chain (all or none). See core.ts for the rules. */
  createTransfers(inputs: readonly TransferInput[], now_ms: number): Transfer[] {
    this.admission?.();
    return this.core.createLinked(inputs, now_ms).map((r) => r.transfer);
  }

  transfer(id: string): Transfer | undefined {
    return this.core.transfer(id);
  }

  // ---- deposits and withdrawals (operators) ------------------------------------------------

  deposit(req: MoneyRequest, now_ms: number): Transfer {
    this.admission?.();
    return this.core.createTransfer({
      id: req.transfer_id,
      debit_account_id: this.accountId(null, req.currency, 'EXTERNAL'),
      credit_account_id: this.userAccount(req.user_id, req.currency, 'AVAILABLE'),
      amount: requireAmount(req.amount_minor),
      code: 'DEPOSIT',
    }, now_ms).transfer;
  }

  /** Withdraws from AVAILABLE only: held and escrowed money can never be withdrawn. */
  withdraw(req: MoneyRequest, now_ms: number): Transfer {
    this.admission?.();
    return this.core.createTransfer(this.withdrawalInput(req, 0), now_ms).transfer;
  }

  /** Two-phase withdrawal: reserves the amount (pending) until completed or cancelled. */
  beginWithdrawal(req: MoneyRequest, now_ms: number): Transfer {
    this.admission?.();
    return this.core.createTransfer(this.withdrawalInput(req, TRANSFER_FLAG_PENDING), now_ms).transfer;
  }

  /** Posts a pending withdrawal, all of it or part (the rest returns to available). */
  completeWithdrawal(req: { transfer_id: string; pending_id: string; amount_minor?: bigint }, now_ms: number): Transfer {
    return this.resolveWithdrawal(req.transfer_id, req.pending_id, TRANSFER_FLAG_POST_PENDING, req.amount_minor, now_ms);
  }

  cancelWithdrawal(req: { transfer_id: string; pending_id: string }, now_ms: number): Transfer {
    return this.resolveWithdrawal(req.transfer_id, req.pending_id, TRANSFER_FLAG_VOID_PENDING, 0n, now_ms);
  }

  private resolveWithdrawal(id: string, pending_id: string, flags: number, amount: bigint | undefined, now_ms: number): Transfer {
    const state = this.core.pendings.get(pending_id);
    if (state === undefined || state.transfer.code !== 'WITHDRAW') throw new LedgerError('PENDING_TRANSFER_NOT_FOUND', `no pending withdrawal "${pending_id}"`);
    const p = state.transfer;
    return this.core.createTransfer({
      id, debit_account_id: p.debit_account_id, credit_account_id: p.credit_account_id, amount: amount ?? p.amount, code: 'WITHDRAW', flags, pending_id,
    }, now_ms).transfer;
  }

  private withdrawalInput(req: MoneyRequest, flags: number): TransferInput {
    return {
      id: req.transfer_id,
      debit_account_id: this.userAccount(req.user_id, req.currency, 'AVAILABLE'),
      credit_account_id: this.accountId(null, req.currency, 'EXTERNAL'),
      amount: requireAmount(req.amount_minor),
      code: 'WITHDRAW',
      flags,
    };
  }

  private userAccount(user_id: number, currency: string, kind: AccountKind): number {
    return this.core.account(requireId('user_id', user_id), currency, kind).id;
  }

  // ---- buy orders: hold, fill, release ------------------------------------------------------

  private factors(p: Pricing): PricingFactors {
    const key = `${p.currency}|${p.minor_units}|${p.tick_size}|${p.fee_bps}|${p.fee_per_kwh_minor}`;
    let f = this.factorsCache.get(key);
    if (f === undefined) {
      f = pricingFactors(p);
      this.factorsCache.set(key, f);
    }
    return f;
  }

  /**
   * Holds price × quantity plus the maximum fee for a buy order, at the order's limit price, with
   * the zone's current pricing (snapshotted on the hold). INSUFFICIENT_FUNDS: the order must not
   * reach the book.
   */
  holdBuyOrder(req: HoldRequest, now_ms: number): HoldResult {
    this.admission?.();
    const order_id = requireId('order_id', req.order_id);
    const prior = this.holds.get(order_id);
    if (prior !== undefined) {
      if (prior.user_id === req.user_id && prior.zone_id === req.zone_id && prior.limit_price_ticks === req.limit_price_ticks && prior.qty_wh === req.qty_wh) {
        return { order_id, held_minor: prior.held_minor };
      }
      throw new LedgerError('DUPLICATE_TRANSFER', `order ${order_id} already has a hold with a different body`);
    }
    const user_id = requireId('user_id', req.user_id);
    const limit = requirePrice(req.limit_price_ticks);
    const qty = requireQty('qty_wh', req.qty_wh);
    const zone = this.zones.get(req.zone_id);
    if (zone === undefined) throw new LedgerError('UNKNOWN_ZONE', `zone ${req.zone_id} is not configured in the ledger`);
    // The fee schedule in force when the order is placed (now): the most this order's fills can be charged.
    const pricing = this.pricingAt(req.zone_id, zone.pricing, now_ms);
    const f = pricing === zone.pricing ? zone.factors : this.factors(pricing);
    const currency = zone.config.currency;
    const available = this.core.account(user_id, currency, 'AVAILABLE');
    const held = this.core.account(user_id, currency, 'HELD');
    const amount = buyerMaxMinor(f, limit, qty);
    if (amount > 0n) {
      this.core.createTransfer({ id: `o${order_id}:hold`, debit_account_id: available.id, credit_account_id: held.id, amount, code: 'HOLD', order_id }, now_ms);
    }
    const hold: OrderHold = {
      order_id, user_id, zone_id: req.zone_id, pricing, limit_price_ticks: limit, qty_wh: qty, held_minor: amount,
      remaining_wh: qty, remaining_minor: amount, status: 'OPEN', released_on_close_minor: 0n, moved_to_order_id: null, bound_from_order_id: null,
      created_at_ms: now_ms, updated_at_ms: now_ms,
    };
    this.holds.set(order_id, hold);
    this.changes?.holds.add(hold);
    return { order_id, held_minor: amount };
  }

  /**
   * Moves an OPEN buy hold to another order id, with the same amounts, quantities and pricing
   * snapshot (the gateway holds a BUY under a temporary id and binds it to the engine's order id
   * once the order is accepted). No money moves: both ids are holds in the same HELD account, so
   * there is no transfer; the old hold becomes MOVED (holding nothing, naming the new id) and the
   * new one names the old. Atomic (both or neither) and idempotent: a retry after it applied
   * returns the same result and changes nothing. It is a consequence of a commitment already made
   * (the order was accepted), so the store's outage admission gate never refuses it.
   * HOLD_NOT_FOUND (no hold `from`), ORDER_NOT_OPEN (`from` is not open, or moved elsewhere),
   * HOLD_EXISTS (`to` already has a hold), INVALID_TRANSFER (bad or equal ids).
   */
  bindHold(req: BindRequest, now_ms: number): BindResult {
    const from_id = requireId('from_order_id', req.from_order_id);
    const to_id = requireId('to_order_id', req.to_order_id);
    if (from_id === to_id) throw new LedgerError('INVALID_TRANSFER', `a hold cannot be moved to its own order id ${from_id}`);
    const from = this.holds.get(from_id);
    if (from === undefined) throw new LedgerError('HOLD_NOT_FOUND', `order ${from_id} has no hold`);
    if (from.status === 'MOVED') {
      const to = this.holds.get(from.moved_to_order_id!)!;
      if (to.order_id === to_id) return { from_order_id: from_id, order_id: to_id, held_minor: to.held_minor };
      throw new LedgerError('ORDER_NOT_OPEN', `the hold of order ${from_id} was already moved to order ${to.order_id}`);
    }
    if (from.status !== 'OPEN') throw new LedgerError('ORDER_NOT_OPEN', `order ${from_id} is ${from.status.toLowerCase()}`);
    if (this.holds.has(to_id)) throw new LedgerError('HOLD_EXISTS', `order ${to_id} already has a hold`);
    const to: OrderHold = {
      order_id: to_id, user_id: from.user_id, zone_id: from.zone_id, pricing: from.pricing, limit_price_ticks: from.limit_price_ticks,
      qty_wh: from.qty_wh, held_minor: from.held_minor, remaining_wh: from.remaining_wh, remaining_minor: from.remaining_minor, status: 'OPEN',
      released_on_close_minor: 0n, moved_to_order_id: null, bound_from_order_id: from_id, created_at_ms: now_ms, updated_at_ms: now_ms,
    };
    from.status = 'MOVED';
    from.moved_to_order_id = to_id;
    from.remaining_minor = 0n;
    from.updated_at_ms = now_ms;
    this.holds.set(to_id, to);
    this.changes?.holds.add(from);
    this.changes?.holds.add(to);
    return { from_order_id: from_id, order_id: to_id, held_minor: to.held_minor };
  }

  /**
   * A fill of a buy order: moves the trade's amount (notional + maximum buyer fee at the trade
   * price) from HELD to the buyer's ESCROW and releases what the hold kept beyond that for this
   * quantity (price improvement and rounding slack) to AVAILABLE. After the fill the hold keeps
   * exactly what the rest of the order can cost at its limit price.
   */
  fillBuyOrder(req: FillRequest, now_ms: number): FillResult {
    const trade_id = requireId('trade_id', req.trade_id);
    const prior = this.escrows.get(trade_id);
    if (prior !== undefined) {
      if (prior.order_id === req.order_id && prior.seller_id === req.seller_id && prior.price_ticks === req.price_ticks &&
        prior.qty_wh === req.qty_wh && prior.interval_id === req.interval_id && prior.source === req.source) {
        return { trade_id, escrow_minor: prior.escrow_minor, released_minor: prior.released_minor };
      }
      throw new LedgerError('DUPLICATE_TRANSFER', `trade ${trade_id} was already recorded with a different body`);
    }
    const hold = this.holds.get(req.order_id);
    if (hold === undefined) throw new LedgerError('HOLD_NOT_FOUND', `order ${req.order_id} has no hold`);
    if (hold.status !== 'OPEN') throw new LedgerError('ORDER_NOT_OPEN', `order ${req.order_id} is ${hold.status.toLowerCase()}`);
    const price = requirePrice(req.price_ticks);
    const qty = requireQty('qty_wh', req.qty_wh);
    const seller_id = requireId('seller_id', req.seller_id);
    const interval_id = requireId('interval_id', req.interval_id);
    if (!(TRADE_SOURCES as readonly string[]).includes(req.source)) throw new LedgerError('INVALID_TRANSFER', `unknown source "${req.source}"`);
    if (price > hold.limit_price_ticks) throw new LedgerError('PRICE_ABOVE_LIMIT', `trade price ${price} is above the order's limit ${hold.limit_price_ticks}`);
    if (qty > hold.remaining_wh) throw new LedgerError('QTY_EXCEEDS_REMAINING', `fill of ${qty} Wh exceeds the order's remaining ${hold.remaining_wh} Wh`);
    if (seller_id === hold.user_id) throw new LedgerError('SELF_TRADE', `user ${seller_id} cannot sell to itself`);
    const currency = hold.pricing.currency;
    // Checked now so that settlement can never fail for want of the seller's account.
    this.core.account(seller_id, currency, 'AVAILABLE');
    const traded_at_ms = req.traded_at_ms ?? now_ms;
    if (!Number.isSafeInteger(traded_at_ms)) throw new LedgerError('INVALID_TRANSFER', `traded_at_ms must be a safe integer`);
    const f = this.factors(hold.pricing);
    // The fee charged is the schedule in force at trade time; the buyer's side never exceeds what its hold was taken for.
    const trade_pricing = this.pricingAt(hold.zone_id, hold.pricing, traded_at_ms);
    const buyerF = buyerFeeFactors(f, this.factors(trade_pricing), price);
    const escrow_minor = buyerMaxMinor(buyerF, price, qty);
    const remaining_wh = hold.remaining_wh - qty;
    const still_needed = buyerMaxMinor(f, hold.limit_price_ticks, remaining_wh);
    const released_minor = hold.remaining_minor - escrow_minor - still_needed;
    assert(released_minor >= 0n, `fill of order ${hold.order_id} needs more than its hold`);
    const held = this.accountId(hold.user_id, currency, 'HELD');
    const chain: TransferInput[] = [];
    if (escrow_minor > 0n) {
      chain.push({ id: `t${trade_id}:escrow`, debit_account_id: held, credit_account_id: this.accountId(hold.user_id, currency, 'ESCROW'), amount: escrow_minor, code: 'ESCROW', order_id: hold.order_id, trade_id });
    }
    if (released_minor > 0n) {
      chain.push({ id: `t${trade_id}:improve`, debit_account_id: held, credit_account_id: this.accountId(hold.user_id, currency, 'AVAILABLE'), amount: released_minor, code: 'RELEASE', order_id: hold.order_id, trade_id });
    }
    this.core.createLinked(chain, now_ms);
    hold.remaining_wh = remaining_wh;
    hold.remaining_minor = still_needed;
    hold.updated_at_ms = now_ms;
    if (remaining_wh === 0) hold.status = 'FILLED';
    const escrow: TradeEscrow = {
      trade_id, order_id: hold.order_id, buyer_id: hold.user_id, seller_id, zone_id: hold.zone_id, interval_id, source: req.source, price_ticks: price,
      qty_wh: qty, pricing: hold.pricing, trade_pricing, escrow_minor, released_minor, status: 'HELD', dispute_reason: null, created_at_ms: now_ms, updated_at_ms: now_ms,
    };
    this.escrows.set(trade_id, escrow);
    this.changes?.holds.add(hold);
    this.changes?.escrows.add(escrow);
    return { trade_id, escrow_minor, released_minor };
  }

  /** Cancel or expiry: releases what the order still holds. */
  releaseBuyOrder(req: ReleaseRequest, now_ms: number): ReleaseResult {
    const hold = this.holds.get(req.order_id);
    if (hold === undefined) throw new LedgerError('HOLD_NOT_FOUND', `order ${req.order_id} has no hold`);
    if (req.reason !== 'CANCELLED' && req.reason !== 'EXPIRED') throw new LedgerError('INVALID_TRANSFER', `release reason must be CANCELLED or EXPIRED`);
    if (hold.status === req.reason) return { order_id: hold.order_id, released_minor: hold.released_on_close_minor };
    if (hold.status !== 'OPEN') throw new LedgerError('ORDER_NOT_OPEN', `order ${req.order_id} is ${hold.status.toLowerCase()}`);
    const amount = hold.remaining_minor;
    if (amount > 0n) {
      const currency = hold.pricing.currency;
      this.core.createTransfer({
        id: `o${hold.order_id}:release`, debit_account_id: this.accountId(hold.user_id, currency, 'HELD'),
        credit_account_id: this.accountId(hold.user_id, currency, 'AVAILABLE'), amount, code: 'RELEASE', order_id: hold.order_id,
      }, now_ms);
    }
    hold.status = req.reason;
    hold.remaining_minor = 0n;
    hold.released_on_close_minor = amount;
    hold.updated_at_ms = now_ms;
    this.changes?.holds.add(hold);
    return { order_id: hold.order_id, released_minor: amount };
  }

  // ---- trades: settle, dispute, resolve, cancel ----------------------------------------------

  private escrowOf(trade_id: number): TradeEscrow {
    const e = this.escrows.get(trade_id);
    if (e === undefined) throw new LedgerError('TRADE_NOT_FOUND', `trade ${trade_id} has no escrow`);
    return e;
  }

  private priorSettlement(e: TradeEscrow, delivered_wh: number, resolution: SettlementResolution): Settlement | null {
    const s = this.settlements.get(e.trade_id);
    // Closed another way (e.g. cancelled, then settled): the status checks answer TRADE_NOT_OPEN.
    if (s === undefined || s.resolution !== resolution) return null;
    if (s.delivered_wh === delivered_wh) return s;
    throw new LedgerError('DUPLICATE_TRANSFER', `trade ${e.trade_id} was already closed (${s.resolution}, ${s.delivered_wh} Wh delivered)`);
  }

  /**
   * Settles a trade for its verified delivered Wh (0 ≤ delivered ≤ traded): pays the seller the
   * delivered notional minus the seller fee, charges the buyer the delivered notional plus the
   * buyer fee, books both fees and the rounding remainder, refunds the rest of the escrow to the
   * buyer, and issues a certificate to the buyer for delivered renewable Wh.
   */
  settleTrade(req: { trade_id: number; delivered_wh: number }, now_ms: number): Settlement {
    const e = this.escrowOf(req.trade_id);
    const prior = this.priorSettlement(e, req.delivered_wh, 'VERIFIED');
    if (prior !== null) return prior;
    if (e.status === 'DISPUTED') throw new LedgerError('TRADE_DISPUTED', `trade ${e.trade_id} is disputed; an operator must resolve it`);
    if (e.status !== 'HELD') throw new LedgerError('TRADE_NOT_OPEN', `trade ${e.trade_id} is ${e.status.toLowerCase()}`);
    return this.close(e, req.delivered_wh, 'VERIFIED', now_ms);
  }

  /** Missing or contradictory meter data: the escrow stays until an operator resolves it. */
  disputeTrade(req: { trade_id: number; reason: string }, now_ms: number): { trade_id: number; dispute_reason: string } {
    const e = this.escrowOf(req.trade_id);
    const reason = String(req.reason).slice(0, MAX_DISPUTE_REASON_LENGTH);
    // A retry (same reason) is a no-op even after the dispute was resolved.
    if (e.dispute_reason !== null) {
      if (e.dispute_reason === reason) return { trade_id: e.trade_id, dispute_reason: reason };
      if (e.status === 'DISPUTED') throw new LedgerError('DUPLICATE_TRANSFER', `trade ${e.trade_id} is already disputed for another reason`);
    }
    if (e.status !== 'HELD') throw new LedgerError('TRADE_NOT_OPEN', `trade ${e.trade_id} is ${e.status.toLowerCase()}`);
    e.status = 'DISPUTED';
    e.dispute_reason = reason;
    e.updated_at_ms = now_ms;
    this.changes?.escrows.add(e);
    return { trade_id: e.trade_id, dispute_reason: reason };
  }

  /** An operator's decision on a disputed trade: settle it for the Wh found delivered. */
  resolveDispute(req: { trade_id: number; delivered_wh: number }, now_ms: number): Settlement {
    const e = this.escrowOf(req.trade_id);
    const prior = this.priorSettlement(e, req.delivered_wh, 'DISPUTE_RESOLVED');
    if (prior !== null) return prior;
    if (e.status !== 'DISPUTED') throw new LedgerError('TRADE_NOT_DISPUTED', `trade ${e.trade_id} is ${e.status.toLowerCase()}, not disputed`);
    return this.close(e, req.delivered_wh, 'DISPUTE_RESOLVED', now_ms);
  }

  /** Cancels a trade (held or disputed): the whole escrow returns to the buyer. */
  cancelTrade(req: { trade_id: number }, now_ms: number): Settlement {
    const e = this.escrowOf(req.trade_id);
    const prior = this.priorSettlement(e, 0, 'CANCELLED');
    if (prior !== null) return prior;
    if (e.status !== 'HELD' && e.status !== 'DISPUTED') throw new LedgerError('TRADE_NOT_OPEN', `trade ${e.trade_id} is ${e.status.toLowerCase()}`);
    return this.close(e, 0, 'CANCELLED', now_ms);
  }

  private close(e: TradeEscrow, delivered: unknown, resolution: SettlementResolution, now_ms: number): Settlement {
    const delivered_wh = requireQty('delivered_wh', delivered, true);
    if (delivered_wh > e.qty_wh) throw new LedgerError('DELIVERED_EXCEEDS_TRADE', `delivered ${delivered_wh} Wh exceeds the traded ${e.qty_wh} Wh`);
    const seller = this.factors(e.trade_pricing);
    const a = settlementAmounts(buyerFeeFactors(this.factors(e.pricing), seller, e.price_ticks), e.price_ticks, delivered_wh, e.escrow_minor, seller);
    const cur = e.pricing.currency;
    const from = this.accountId(e.buyer_id, cur, 'ESCROW');
    const base = { debit_account_id: from, order_id: e.order_id, trade_id: e.trade_id };
    const chain: TransferInput[] = [];
    const t = e.trade_id;
    if (a.seller_net_minor > 0n) chain.push(withFields(base, { id: `t${t}:pay`, credit_account_id: this.accountId(e.seller_id, cur, 'AVAILABLE'), amount: a.seller_net_minor, code: 'SETTLE' }));
    if (a.fee_minor > 0n) chain.push(withFields(base, { id: `t${t}:fee`, credit_account_id: this.accountId(null, cur, 'FEES'), amount: a.fee_minor, code: 'FEE' }));
    if (a.rounding_minor > 0n) chain.push(withFields(base, { id: `t${t}:round`, credit_account_id: this.accountId(null, cur, 'ROUNDING'), amount: a.rounding_minor, code: 'ROUNDING' }));
    if (a.refund_minor > 0n) chain.push(withFields(base, { id: `t${t}:refund`, credit_account_id: this.accountId(e.buyer_id, cur, 'AVAILABLE'), amount: a.refund_minor, code: 'REFUND' }));
    this.core.createLinked(chain, now_ms);
    let certificate_id: string | null = null;
    if (resolution !== 'CANCELLED' && isRenewable(e.source) && delivered_wh > 0) {
      this.settled_renewable_wh += delivered_wh;
      certificate_id = certificateIdForTrade(t);
      this.certificates.issue({
        id: certificate_id, trade_id: t, zone_id: e.zone_id, interval_id: e.interval_id, source: e.source, producer_id: e.seller_id,
        energy_wh: delivered_wh, issued_at_ms: now_ms,
      }, e.buyer_id);
    }
    const s: Settlement = { trade_id: t, delivered_wh, ...a, certificate_id, resolution, settled_at_ms: now_ms };
    this.settlements.set(t, s);
    e.status = resolution === 'CANCELLED' ? 'CANCELLED' : 'SETTLED';
    e.updated_at_ms = now_ms;
    this.changes?.settlements.push(s);
    this.changes?.escrows.add(e);
    return s;
  }

  // ---- certificates --------------------------------------------------------------------------

  certificate(id: string): Certificate | undefined {
    return this.certificates.byId.get(id);
  }

  certificatesOf(user_id: number): Certificate[] {
    return [...this.certificates.byId.values()].filter((c) => c.owner_id === user_id);
  }

  transferCertificate(req: { event_id: string; certificate_id: string; from_user_id: number; to_user_id: number }, now_ms: number): CertificateEvent {
    this.admission?.();
    if (!this.users.has(req.to_user_id)) throw new LedgerError('ACCOUNT_NOT_FOUND', `user ${req.to_user_id} has no accounts in the ledger`);
    if (req.to_user_id === req.from_user_id) throw new LedgerError('ACCOUNTS_MUST_BE_DIFFERENT', `a certificate transfer needs two different users`);
    return this.certificates.transfer(req.event_id, req.certificate_id, req.from_user_id, req.to_user_id, now_ms);
  }

  /** Retirement is final: the certificate can no longer move. */
  retireCertificate(req: { event_id: string; certificate_id: string; user_id: number }, now_ms: number): CertificateEvent {
    this.admission?.();
    return this.certificates.retire(req.event_id, req.certificate_id, req.user_id, now_ms);
  }

  verifyCertificates(): ChainVerdict {
    return this.certificates.verifyChain();
  }

  // ---- checks and snapshots ------------------------------------------------------------------

  /**
   * Full consistency check, O(state): the core's sums and limits, every user's HELD balance equals
   * the sum of its open holds, every ESCROW balance equals the sum of its open trades' escrow,
   * certificate Wh ≤ settled renewable Wh, and the certificate chain verifies.
   */
  checkInvariants(): void {
    this.core.checkInvariants();
    const held = new Map<number, bigint>();
    const escrowed = new Map<number, bigint>();
    for (const h of this.holds.values()) {
      if (h.status !== 'OPEN' && h.remaining_minor !== 0n) throw new Error(`invariant: closed order ${h.order_id} still holds ${h.remaining_minor}`);
      if ((h.status === 'MOVED') !== (h.moved_to_order_id !== null)) throw new Error(`invariant: hold ${h.order_id} is ${h.status} with moved_to ${h.moved_to_order_id}`);
      if (h.moved_to_order_id !== null && this.holds.get(h.moved_to_order_id)?.bound_from_order_id !== h.order_id) {
        throw new Error(`invariant: hold ${h.order_id} moved to ${h.moved_to_order_id}, which does not name it`);
      }
      if (h.bound_from_order_id !== null && this.holds.get(h.bound_from_order_id)?.moved_to_order_id !== h.order_id) {
        throw new Error(`invariant: hold ${h.order_id} names ${h.bound_from_order_id} as its origin, which did not move to it`);
      }
      const k = this.accountId(h.user_id, h.pricing.currency, 'HELD');
      held.set(k, (held.get(k) ?? 0n) + h.remaining_minor);
    }
    for (const e of this.escrows.values()) {
      if (e.status !== 'HELD' && e.status !== 'DISPUTED') continue;
      const k = this.accountId(e.buyer_id, e.pricing.currency, 'ESCROW');
      escrowed.set(k, (escrowed.get(k) ?? 0n) + e.escrow_minor);
    }
    for (let i = 1; i < this.core.accounts.length; i++) {
      const a = this.core.accounts[i]!;
      if (a.kind === 'HELD' && balanceOf(a) !== (held.get(a.id) ?? 0n)) throw new Error(`invariant: HELD account ${a.id} holds ${balanceOf(a)}, its open orders ${held.get(a.id) ?? 0n}`);
      if (a.kind === 'ESCROW' && balanceOf(a) !== (escrowed.get(a.id) ?? 0n)) throw new Error(`invariant: ESCROW account ${a.id} holds ${balanceOf(a)}, its open trades ${escrowed.get(a.id) ?? 0n}`);
    }
    if (this.certificates.issued_wh_total > this.settled_renewable_wh) {
      throw new Error(`invariant: ${this.certificates.issued_wh_total} certificate Wh exceed ${this.settled_renewable_wh} settled renewable Wh`);
    }
    const verdict = this.certificates.verifyChain();
    if (!verdict.ok) throw new Error(`invariant: certificate chain broken at event ${verdict.seq}: ${verdict.reason}`);
  }

  /** A plain, comparable picture of the whole state (used by the restart test). */
  snapshot(): LedgerSnapshot {
    const str = (o: object): Record<string, unknown> => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'bigint' ? v.toString() : v]));
    return {
      accounts: this.core.accounts.slice(1).map((a) => str(a!)),
      transfer_count: this.core.transfer_count,
      transfers_digest: digestTransfers(this.core.transfersInOrder()),
      pendings: [...this.core.pendings.values()].map((p) => ({ id: p.transfer.id, status: p.status, resolved_by: p.resolved_by, posted_amount: p.posted_amount.toString() })),
      holds: [...this.holds.values()].sort((a, b) => a.order_id - b.order_id).map((h) => str({ ...h, pricing: JSON.stringify(h.pricing, bigintJson) })),
      escrows: [...this.escrows.values()].sort((a, b) => a.trade_id - b.trade_id)
        .map((e) => str({ ...e, pricing: JSON.stringify(e.pricing, bigintJson), trade_pricing: JSON.stringify(e.trade_pricing, bigintJson) })),
      settlements: [...this.settlements.values()].sort((a, b) => a.trade_id - b.trade_id).map(str),
      certificates: [...this.certificates.byId.values()].sort((a, b) => a.trade_id - b.trade_id).map((c) => str(c)),
      certificate_events: this.certificates.events.map((e) => str(e)),
      settled_renewable_wh: this.settled_renewable_wh,
    };
  }
}

export interface LedgerSnapshot {
  accounts: Record<string, unknown>[];
  transfer_count: number;
  transfers_digest: string;
  pendings: Record<string, unknown>[];
  holds: Record<string, unknown>[];
  escrows: Record<string, unknown>[];
  settlements: Record<string, unknown>[];
  certificates: Record<string, unknown>[];
  certificate_events: Record<string, unknown>[];
  settled_renewable_wh: number;
}

function digestTransfers(ts: Transfer[]): string {
  const h = createHash('sha256');
  for (const t of ts) h.update(JSON.stringify(t, bigintJson));
  return h.digest('hex');
}

function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}
