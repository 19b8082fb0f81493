/**
 * The ledger's core: accounts and transfers in the TigerBeetle model, in memory, deterministic,
 * no I/O (time is an input). Every movement is a transfer between two accounts of one currency;
 * balances are derived from cumulative debits and credits; transfers are immutable and
 * identified by a client-chosen id, so a retry with the same id and body changes nothing.
 *
 * Balance of an account = credits_posted − debits_posted. The EXTERNAL account of a currency is
 * the outside world (deposits debit it, so it goes negative); all other accounts refuse debits
 * beyond their credits, pending debits included (TigerBeetle's debits_must_not_exceed_credits),
 * so no available balance is ever negative. Σ balances over every account is always 0.
 */
import { assert, LedgerError } from './errors.js';
import { IdIndex, MAX_INDEXED_IDS } from './id-index.js';

export const ACCOUNT_KINDS = ['AVAILABLE', 'HELD', 'ESCROW', 'FEES', 'ROUNDING', 'EXTERNAL'] as const;
export type AccountKind = (typeof ACCOUNT_KINDS)[number];
/** Kinds every user has per currency. */
export const USER_ACCOUNT_KINDS = ['AVAILABLE', 'HELD', 'ESCROW'] as const;
/** Kinds the platform has per currency. */
export const PLATFORM_ACCOUNT_KINDS = ['FEES', 'ROUNDING', 'EXTERNAL'] as const;

export const TRANSFER_CODES = [
  'DEPOSIT', 'WITHDRAW', 'HOLD', 'RELEASE', 'ESCROW', 'SETTLE', 'FEE', 'ROUNDING', 'REFUND', 'TRANSFER',
] as const;
export type TransferCode = (typeof TRANSFER_CODES)[number];
const TRANSFER_CODE_SET: ReadonlySet<string> = new Set(TRANSFER_CODES);

export const ACCOUNT_FLAG_DEBITS_MUST_NOT_EXCEED_CREDITS = 1;

export const TRANSFER_FLAG_PENDING = 1;
export const TRANSFER_FLAG_POST_PENDING = 2;
export const TRANSFER_FLAG_VOID_PENDING = 4;
const TRANSFER_FLAGS_ALL = TRANSFER_FLAG_PENDING | TRANSFER_FLAG_POST_PENDING | TRANSFER_FLAG_VOID_PENDING;

/** Transfer ids are at most this long (ASCII printable, no whitespace). */
export const MAX_TRANSFER_ID_LENGTH = 128;
/** A linked chain applies at most this many transfers, all or none (TigerBeetle's batch size). */
export const MAX_LINKED_TRANSFERS = 8190;
/** Balances stay below 10^38 so they fit NUMERIC(38,0). */
export const MAX_BALANCE = 10n ** 38n - 1n;
/** One transfer moves at most 10^30 minor units. */
export const MAX_AMOUNT = 10n ** 30n;
/**
 * Σ of all posted (and of all pending) amounts stays at or below this, so no single account's
 * cumulative column can pass MAX_BALANCE: a global check with no per-transfer arithmetic.
 */
const MAX_TOTAL = MAX_BALANCE - MAX_AMOUNT;

export interface Account {
  readonly id: number;
  /** null for platform accounts. */
  readonly user_id: number | null;
  readonly currency: string;
  readonly kind: AccountKind;
  readonly flags: number;
  readonly created_at_ms: number;
  debits_posted: bigint;
  credits_posted: bigint;
  debits_pending: bigint;
  credits_pending: bigint;
}

export interface Transfer {
  /** Order of application (1, 2, …): the replay order. */
  readonly seq: number;
  readonly id: string;
  readonly debit_account_id: number;
  readonly credit_account_id: number;
  /** Minor units. For a post: the amount posted; for a void: the amount released. */
  readonly amount: bigint;
  readonly pending_id: string | null;
  readonly code: TransferCode;
  readonly flags: number;
  readonly order_id: number | null;
  readonly trade_id: number | null;
  readonly created_at_ms: number;
}

export interface TransferInput {
  id: string;
  debit_account_id: number;
  credit_account_id: number;
  amount: bigint;
  code: TransferCode;
  flags?: number;
  pending_id?: string | null;
  order_id?: number | null;
  trade_id?: number | null;
}

export type PendingStatus = 'PENDING' | 'POSTED' | 'VOIDED';

export interface PendingState {
  readonly transfer: Transfer;
  status: PendingStatus;
  /** Id of the post or void transfer that resolved it. */
  resolved_by: string | null;
  posted_amount: bigint;
}

export interface CreateResult {
  readonly transfer: Transfer;
  /** false when the id existed with the same body (a harmless retry). */
  readonly created: boolean;
}

/** Receives what changed, for the persistence layer. */
export interface CoreRecorder {
  account(account: Account): void;
  transfer(transfer: Transfer): void;
  touched(account: Account): void;
  pending(state: PendingState): void;
  /** Called when a linked chain rolls back the last recorded transfer. */
  untransfer(transfer: Transfer): void;
}

export function accountKey(user_id: number | null, currency: string, kind: AccountKind): string {
  return `${user_id ?? 'P'}:${currency}:${kind}`;
}

export function balanceOf(a: Account): bigint {
  return a.credits_posted - a.debits_posted;
}

/** What the account holder can spend: posted balance minus pending debits. */
export function availableOf(a: Account): bigint {
  return a.credits_posted - a.debits_posted - a.debits_pending;
}

export class LedgerCore {
  /** accounts[id]; index 0 is unused (ids start at 1, as in TigerBeetle 0 is not an id). */
  readonly accounts: (Account | undefined)[] = [undefined];
  private readonly accountIds = new Map<string, number>();
  /** bySeq[seq] = transfer (index 0 unused). */
  private readonly bySeq: Transfer[] = [undefined as unknown as Transfer];
  private readonly ids = new IdIndex();
  readonly pendings = new Map<string, PendingState>();
  private nextSeq = 1;
  recorder: CoreRecorder | null = null;
  /** A second listener (tests, metrics); persistence uses `recorder`. */
  observer: CoreRecorder | null = null;
  /**
   * Running totals, kept incrementally and cross-checked by checkInvariants(): every posted
   * amount is one debit and one credit, so Σ debits_posted = Σ credits_posted = sum_posted.
   */
  sum_posted = 0n;
  sum_pending = 0n;

  get transfer_count(): number {
    return this.nextSeq - 1;
  }

  /** The transfer with this id, if any. */
  transfer(id: string): Transfer | undefined {
    const seq = this.ids.get(id);
    return seq === 0 ? undefined : this.bySeq[seq];
  }

  /** The transfer applied as number `seq` (1-based). */
  transferAt(seq: number): Transfer | undefined {
    return seq >= 1 ? this.bySeq[seq] : undefined;
  }

  /** Every transfer in the order applied (a copy). */
  transfersInOrder(): Transfer[] {
    return this.bySeq.slice(1);
  }

  get account_count(): number {
    return this.accounts.length - 1;
  }

  /** Opens an account (or returns the existing one with the same owner, currency and kind). */
  openAccount(user_id: number | null, currency: string, kind: AccountKind, now_ms: number): Account {
    const key = accountKey(user_id, currency, kind);
    const existing = this.accountIds.get(key);
    if (existing !== undefined) return this.accounts[existing]!;
    if (user_id !== null && (!Number.isSafeInteger(user_id) || user_id <= 0)) {
      throw new LedgerError('ACCOUNT_NOT_FOUND', `user id ${user_id} is not a positive safe integer`);
    }
    const account: Account = {
      id: this.accounts.length,
      user_id,
      currency,
      kind,
      flags: kind === 'EXTERNAL' ? 0 : ACCOUNT_FLAG_DEBITS_MUST_NOT_EXCEED_CREDITS,
      created_at_ms: now_ms,
      debits_posted: 0n,
      credits_posted: 0n,
      debits_pending: 0n,
      credits_pending: 0n,
    };
    this.restoreAccount(account);
    this.recorder?.account(account);
    return account;
  }

  /** Adds an account as loaded from storage (ids must come in order). */
  restoreAccount(account: Account): void {
    assert(account.id === this.accounts.length, `account ids must be dense: expected ${this.accounts.length}, got ${account.id}`);
    this.accounts.push(account);
    this.accountIds.set(accountKey(account.user_id, account.currency, account.kind), account.id);
  }

  findAccount(user_id: number | null, currency: string, kind: AccountKind): Account | undefined {
    const id = this.accountIds.get(accountKey(user_id, currency, kind));
    return id === undefined ? undefined : this.accounts[id];
  }

  account(user_id: number | null, currency: string, kind: AccountKind): Account {
    const a = this.findAccount(user_id, currency, kind);
    if (a === undefined) {
      throw new LedgerError('ACCOUNT_NOT_FOUND', `no ${kind} account in ${currency} for ${user_id === null ? 'the platform' : `user ${user_id}`}`);
    }
    return a;
  }

  /**
   * Creates one transfer, or returns the existing one when the id was used with the same body.
   * Throws LedgerError (and changes nothing) when the transfer is refused.
   */
  createTransfer(input: TransferInput, now_ms: number): CreateResult {
    const h = typeof input.id === 'string' ? this.ids.hashId(input.id, MAX_TRANSFER_ID_LENGTH) : -1;
    if (h === -1) throw new LedgerError('INVALID_TRANSFER', `transfer id must be 1..${MAX_TRANSFER_ID_LENGTH} printable ASCII characters`);
    const existingSeq = this.ids.get(input.id, h);
    if (existingSeq !== 0) {
      const existing = this.bySeq[existingSeq];
      if (sameBody(existing, input)) return { transfer: existing, created: false };
      throw new LedgerError('DUPLICATE_TRANSFER', `transfer id "${input.id}" was already used with a different body`);
    }
    if (this.nextSeq > MAX_INDEXED_IDS) throw new LedgerError('LEDGER_FULL', `the ledger holds its maximum of ${MAX_INDEXED_IDS} transfers`);
    if (!TRANSFER_CODE_SET.has(input.code)) throw new LedgerError('INVALID_TRANSFER', `unknown transfer code "${input.code}"`);
    const flags = input.flags ?? 0;
    if ((flags & ~TRANSFER_FLAGS_ALL) !== 0 || (flags & (flags - 1)) !== 0) {
      throw new LedgerError('INVALID_TRANSFER', `transfer flags ${flags} are not one of pending, post_pending, void_pending`);
    }
    if (typeof input.amount !== 'bigint' || input.amount > MAX_AMOUNT) throw new LedgerError('INVALID_AMOUNT', `amount must be a bigint 0..10^30 minor units`);
    const debit = this.accounts[input.debit_account_id];
    const credit = this.accounts[input.credit_account_id];
    if (debit === undefined || input.debit_account_id === 0) throw new LedgerError('ACCOUNT_NOT_FOUND', `debit account ${input.debit_account_id} does not exist`);
    if (credit === undefined || input.credit_account_id === 0) throw new LedgerError('ACCOUNT_NOT_FOUND', `credit account ${input.credit_account_id} does not exist`);
    if (debit === credit) throw new LedgerError('ACCOUNTS_MUST_BE_DIFFERENT', `a transfer needs two different accounts (both ${debit.id})`);
    if (debit.currency !== credit.currency) {
      throw new LedgerError('CURRENCY_MISMATCH', `accounts ${debit.id} (${debit.currency}) and ${credit.id} (${credit.currency}) are in different currencies`);
    }
    if ((flags & (TRANSFER_FLAG_POST_PENDING | TRANSFER_FLAG_VOID_PENDING)) !== 0) return this.resolvePending(input, flags, debit, credit, now_ms, h);
    if (input.pending_id != null) throw new LedgerError('INVALID_TRANSFER', `pending_id is only for post and void transfers`);
    const amount = input.amount;
    if (amount <= 0n) throw new LedgerError('INVALID_AMOUNT', `amount must be positive`);
    if ((debit.flags & ACCOUNT_FLAG_DEBITS_MUST_NOT_EXCEED_CREDITS) !== 0) {
      const pending = debit.debits_pending;
      if ((pending === 0n ? debit.debits_posted + amount : debit.debits_posted + pending + amount) > debit.credits_posted) {
        throw new LedgerError(
          'INSUFFICIENT_FUNDS',
          `account ${debit.id} (${debit.kind} ${debit.currency}) has ${availableOf(debit)} minor units available, ${amount} needed`,
        );
      }
    }
    if (this.sum_posted > MAX_TOTAL || this.sum_pending > MAX_TOTAL) {
      throw new LedgerError('BALANCE_OVERFLOW', `the ledger's total would pass 10^38 minor units`);
    }
    const transfer = this.makeTransfer(input, flags, amount, now_ms);
    if (flags === TRANSFER_FLAG_PENDING) {
      debit.debits_pending += amount;
      credit.credits_pending += amount;
      this.sum_pending += amount;
      const state: PendingState = { transfer, status: 'PENDING', resolved_by: null, posted_amount: 0n };
      this.pendings.set(transfer.id, state);
      this.recorder?.pending(state);
      this.observer?.pending(state);
    } else {
      debit.debits_posted += amount;
      credit.credits_posted += amount;
      this.sum_posted += amount;
    }
    this.commit(transfer, debit, credit, h);
    return { transfer, created: true };
  }

  /** Post (all or part) or void a pending transfer; the part not posted is released. */
  private resolvePending(input: TransferInput, flags: number, debit: Account, credit: Account, now_ms: number, h: number): CreateResult {
    const pending_id = input.pending_id;
    if (pending_id == null) throw new LedgerError('INVALID_TRANSFER', `a post or void transfer needs pending_id`);
    const state = this.pendings.get(pending_id);
    if (state === undefined) throw new LedgerError('PENDING_TRANSFER_NOT_FOUND', `no pending transfer "${pending_id}"`);
    if (state.status !== 'PENDING') {
      throw new LedgerError('TRANSFER_NOT_PENDING', `transfer "${pending_id}" was already ${state.status.toLowerCase()} by "${state.resolved_by}"`);
    }
    const p = state.transfer;
    if (p.debit_account_id !== debit.id || p.credit_account_id !== credit.id) {
      throw new LedgerError('INVALID_TRANSFER', `post/void of "${pending_id}" must name its accounts ${p.debit_account_id} → ${p.credit_account_id}`);
    }
    let amount: bigint;
    if (flags === TRANSFER_FLAG_VOID_PENDING) {
      if (input.amount !== 0n && input.amount !== p.amount) throw new LedgerError('INVALID_AMOUNT', `a void releases the whole pending amount (${p.amount}); give 0 or that amount`);
      amount = p.amount;
    } else {
      if (input.amount > p.amount) throw new LedgerError('AMOUNT_EXCEEDS_PENDING', `cannot post ${input.amount}: transfer "${pending_id}" reserved ${p.amount}`);
      if (input.amount <= 0n) throw new LedgerError('INVALID_AMOUNT', `a post needs a positive amount (use a void to release everything)`);
      amount = input.amount;
    }
    const transfer = this.makeTransfer(input, flags, amount, now_ms);
    debit.debits_pending -= p.amount;
    credit.credits_pending -= p.amount;
    this.sum_pending -= p.amount;
    if (flags === TRANSFER_FLAG_POST_PENDING) {
      debit.debits_posted += amount;
      credit.credits_posted += amount;
      this.sum_posted += amount;
      state.status = 'POSTED';
      state.posted_amount = amount;
    } else {
      state.status = 'VOIDED';
    }
    state.resolved_by = transfer.id;
    this.recorder?.pending(state);
    this.observer?.pending(state);
    this.commit(transfer, debit, credit, h);
    return { transfer, created: true };
  }

  private makeTransfer(input: TransferInput, flags: number, amount: bigint, now_ms: number): Transfer {
    return {
      seq: this.nextSeq,
      id: input.id,
      debit_account_id: input.debit_account_id,
      credit_account_id: input.credit_account_id,
      amount,
      pending_id: input.pending_id ?? null,
      code: input.code,
      flags,
      order_id: input.order_id ?? null,
      trade_id: input.trade_id ?? null,
      created_at_ms: now_ms,
    };
  }

  private commit(transfer: Transfer, debit: Account, credit: Account, h: number): void {
    this.nextSeq++;
    this.bySeq.push(transfer);
    this.ids.insert(transfer.id, transfer.seq, h);
    const r = this.recorder;
    if (r !== null) {
      r.transfer(transfer);
      r.touched(debit);
      r.touched(credit);
    }
    const o = this.observer;
    if (o !== null) {
      o.transfer(transfer);
      o.touched(debit);
      o.touched(credit);
    }
  }

  /**
   * Linked transfers: all apply or none does. A transfer whose id exists with the same body is
   * a harmless retry and counts as applied. On a refusal everything created by the chain is
   * undone and the error names the failing index.
   */
  createLinked(inputs: readonly TransferInput[], now_ms: number): CreateResult[] {
    if (inputs.length > MAX_LINKED_TRANSFERS) throw new LedgerError('LINKED_CHAIN_TOO_LONG', `a linked chain has at most ${MAX_LINKED_TRANSFERS} transfers`);
    const results: CreateResult[] = [];
    let i = 0;
    try {
      for (; i < inputs.length; i++) results.push(this.createTransfer(inputs[i], now_ms));
    } catch (err) {
      for (let j = results.length - 1; j >= 0; j--) if (results[j].created) this.undo(results[j].transfer);
      if (err instanceof LedgerError) throw new LedgerError(err.code, `linked transfer ${i} ("${inputs[i].id}"): ${err.message}`, i);
      throw err;
    }
    return results;
  }

  /** Reverses the most recent transfer (only used to roll back a linked chain). */
  private undo(t: Transfer): void {
    assert(t.seq === this.nextSeq - 1, `only the last transfer can be undone`);
    const debit = this.accounts[t.debit_account_id]!;
    const credit = this.accounts[t.credit_account_id]!;
    if (t.flags === TRANSFER_FLAG_PENDING) {
      debit.debits_pending -= t.amount;
      credit.credits_pending -= t.amount;
      this.sum_pending -= t.amount;
      this.pendings.delete(t.id);
    } else {
      if (t.flags !== TRANSFER_FLAG_VOID_PENDING) {
        debit.debits_posted -= t.amount;
        credit.credits_posted -= t.amount;
        this.sum_posted -= t.amount;
      }
      if (t.flags !== 0) {
        const state = this.pendings.get(t.pending_id!)!;
        debit.debits_pending += state.transfer.amount;
        credit.credits_pending += state.transfer.amount;
        this.sum_pending += state.transfer.amount;
        state.status = 'PENDING';
        state.resolved_by = null;
        state.posted_amount = 0n;
        this.recorder?.pending(state);
        this.observer?.pending(state);
      }
    }
    this.ids.delete(t.id);
    this.bySeq.pop();
    this.nextSeq--;
    this.recorder?.untransfer(t);
    this.observer?.untransfer(t);
  }

  /**
   * Full recount over every account: Σ debits = Σ credits (posted and pending), the running
   * totals agree with the recount, and no limited account is overdrawn. O(accounts).
   */
  checkInvariants(): void {
    let dp = 0n, cp = 0n, dpe = 0n, cpe = 0n;
    for (let i = 1; i < this.accounts.length; i++) {
      const a = this.accounts[i]!;
      dp += a.debits_posted;
      cp += a.credits_posted;
      dpe += a.debits_pending;
      cpe += a.credits_pending;
      if (a.debits_pending < 0n || a.credits_pending < 0n) throw new Error(`invariant: account ${a.id} has negative pending amounts`);
      if ((a.flags & ACCOUNT_FLAG_DEBITS_MUST_NOT_EXCEED_CREDITS) !== 0 && availableOf(a) < 0n) {
        throw new Error(`invariant: account ${a.id} (${a.kind}) is overdrawn: ${availableOf(a)}`);
      }
    }
    if (dp !== cp) throw new Error(`invariant: Σ debits_posted ${dp} ≠ Σ credits_posted ${cp}`);
    if (dpe !== cpe) throw new Error(`invariant: Σ debits_pending ${dpe} ≠ Σ credits_pending ${cpe}`);
    if (dp !== this.sum_posted || dpe !== this.sum_pending) {
      throw new Error(`invariant: running totals disagree with the recount`);
    }
  }
}

function sameBody(t: Transfer, input: TransferInput): boolean {
  const flags = input.flags ?? 0;
  const sameAmount = flags === TRANSFER_FLAG_VOID_PENDING ? input.amount === 0n || input.amount === t.amount : input.amount === t.amount;
  return (
    t.debit_account_id === input.debit_account_id &&
    t.credit_account_id === input.credit_account_id &&
    sameAmount &&
    t.code === input.code &&
    t.flags === flags &&
    t.pending_id === (input.pending_id ?? null) &&
    t.order_id === (input.order_id ?? null) &&
    t.trade_id === (input.trade_id ?? null)
  );
}
