/**
 * Persistence for the single-writer ledger. The in-memory ledger records what changed; a flush
 * takes those changes (synchronously, so the batch is one consistent cut) and writes them to
 * PostgreSQL in ONE transaction with a handful of set-based statements (unnest arrays), never a
 * round trip per transfer. Flushes are serialized: batch n+1 commits after batch n. Callers
 * acknowledge an operation only after the flush holding it has resolved.
 *
 * On start, loadLedger() rebuilds the state: accounts, then every transfer replayed in seq order
 * through the same core (so balances and pending states are recomputed, not trusted), then the
 * stored balances and pending states are compared with the replay (LEDGER_CORRUPT if they
 * differ), then holds, escrows, settlements and certificates are loaded and the certificate
 * chain is verified.
 */
import type postgres from 'postgres';
import type { Sql } from '../schema/db.js';
import { ACCOUNT_KINDS, type Account, type AccountKind, type PendingStatus, type TransferCode } from './core.js';
import { LedgerError } from './errors.js';
import { isRenewable, type Certificate, type CertificateEvent, type CertificateEventKind, type TradeSource } from './certificates.js';
import {
  Ledger, type ChangeSet, type EscrowStatus, type HoldStatus, type OrderHold, type Settlement, type SettlementResolution, type TradeEscrow,
} from './ledger.js';
import type { Pricing } from './money.js';

/** Transfers read per round trip during a rebuild. */
export const REBUILD_PAGE_ROWS = 50_000;
/**
 * Batch transactions open at once when batches are pipelined (each holds a pooled connection):
 * batch n+k streams while n, …, n+k−1 finish; n+MAX_OPEN_BATCHES waits for n to commit.
 */
export const MAX_OPEN_BATCHES = 2; // 3 measured no better here (the bench keeps 3 flushes in flight)
/** The timer (start()) skips a tick while this many batches are still committing. */
export const MAX_TIMED_FLUSHES_IN_FLIGHT = 3;
/**
 * The longest a flush() keeps its caller waiting: it rejects with EXCHANGE_UNAVAILABLE at once
 * while the store is unavailable, as soon as it becomes unavailable, or after this long if its
 * batch has not committed (a hung database). The batch itself is kept and still written.
 */
export const FLUSH_UNAVAILABLE_AFTER_MS = 5_000;
/**
 * Unwritten rows (flushed batches not yet committed + changes not yet flushed) beyond which, while
 * the store is unavailable, the ledger refuses new commitments with EXCHANGE_UNAVAILABLE.
 */
export const MAX_BACKLOG_ROWS = 200_000;
/** Retry delays after a connection-class failure: doubling from the first, capped at the last. */
export const RETRY_BACKOFF_MIN_MS = 50;
export const RETRY_BACKOFF_MAX_MS = 2_000;

/** PostgreSQL SQLSTATEs that mean "the server or the connection went away", not "the batch is wrong". */
const CONNECTION_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN', 'ENOTFOUND',
  'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT',
]);

/**
 * True for a failure that says nothing about the batch itself (the database or the network is
 * away): retry the same batch. Anything else (a constraint, a type error) is a bug or corruption.
 * Follows `cause` (the COPY wrapper keeps the original error there).
 */
export function isConnectionError(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && e !== undefined && depth < 5; depth++) {
    const x = e as { code?: unknown; errno?: unknown; cause?: unknown; message?: unknown };
    const code = typeof x.code === 'string' ? x.code : typeof x.errno === 'string' ? x.errno : '';
    if (CONNECTION_CODES.has(code) || CONNECTION_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code)) return true;
    if (typeof x.message === 'string' && /\b(ECONNREFUSED|ECONNRESET|CONNECTION_CLOSED|CONNECTION_ENDED|CONNECTION_DESTROYED|CONNECT_TIMEOUT)\b/.test(x.message)) return true;
    e = x.cause;
  }
  return false;
}

export interface StoreStatus {
  /** false while PostgreSQL is unreachable (batches are kept and retried) or after a fail-stop. */
  available: boolean;
  state: 'ok' | 'unavailable' | 'stopped';
  /** Wall-clock ms when the current outage began (null when available). */
  unavailable_since_ms: number | null;
  /** The outage's last connection error, or the error that stopped the store. */
  error: string | null;
  /** Flushed batches not yet committed, and their rows; plus rows recorded but not flushed yet. */
  backlog_batches: number;
  backlog_rows: number;
  durable_seq: number;
  /** Retries of a batch after a connection-class failure, since the store was created. */
  retries: number;
}

export interface LedgerStoreOptions {
  flush_unavailable_after_ms?: number;
  max_backlog_rows?: number;
  retry_backoff_min_ms?: number;
  retry_backoff_max_ms?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Tx = postgres.ReservedSql<Record<string, never>>;
/** Marks the connection dead when a statement fails with a connection-class error (see Transaction). */
type Watch = <T>(p: Promise<T>) => Promise<T>;
type Col = (string | null)[];

const s = (v: bigint | number | null): string | null => (v === null ? null : v.toString());

/** `timestamptz` from input-clock milliseconds, exactly. */
const TS = (col: string): string => `timestamptz 'epoch' + ${col} * interval '1 millisecond'`;
const MS = (col: string): string => `(extract(epoch from ${col}) * 1000)::bigint`;

interface Batch {
  accounts: { id: Col; user_id: Col; currency: Col; kind: Col; flags: Col; created: Col };
  /** ledger_transfers rows in PostgreSQL's binary COPY format (header, rows, trailer). */
  transfers_copy: Buffer;
  /** Their ids (to explain a failed batch). */
  transfer_ids: string[];
  balances: { id: Col; dp: Col; cp: Col; dpe: Col; cpe: Col };
  pendings: { id: Col; status: Col; resolved_by: Col; posted: Col };
  holds: Col[];
  escrows: Col[];
  settlements: Col[];
  certificates: Col[];
  events: Col[];
  transfer_count: number;
  /** Rows the batch writes (backlog accounting). */
  rows: number;
  /**
   * A row only this batch inserts (insert without `on conflict`): present ⇔ the batch committed.
   * null when every statement of the batch is an idempotent upsert (rewriting it is harmless).
   */
  marker: { table: 'transfer' | 'event' | 'account' | 'settlement'; key: string; id: string } | null;
}

function columns(n: number): Col[] {
  return Array.from({ length: n }, () => []);
}

/** Copies a change set into column arrays, synchronously (the values as of this moment). */
function serialize(c: ChangeSet): Batch {
  const a = { id: [] as Col, user_id: [] as Col, currency: [] as Col, kind: [] as Col, flags: [] as Col, created: [] as Col };
  for (const x of c.accounts) {
    a.id.push(s(x.id)); a.user_id.push(s(x.user_id)); a.currency.push(x.currency); a.kind.push(x.kind); a.flags.push(s(x.flags)); a.created.push(s(x.created_at_ms));
  }
  const n = c.transfers.length;
  const transfer_ids = new Array<string>(n);
  const w = new CopyBinaryWriter(n * 160 + 64);
  w.header();
  let lastMs = NaN;
  let lastUs = 0;
  for (let i = 0; i < n; i++) {
    const x = c.transfers[i];
    transfer_ids[i] = x.id;
    if (x.created_at_ms !== lastMs) {
      lastMs = x.created_at_ms;
      lastUs = (lastMs - PG_EPOCH_MS) * 1000;
    }
    w.ensure(200 + 2 * x.id.length + (x.pending_id === null ? 0 : x.pending_id.length));
    w.i16(11);
    w.text(x.id);
    w.int8(x.seq);
    w.int8(x.debit_account_id);
    w.int8(x.credit_account_id);
    w.numeric(x.amount);
    if (x.pending_id === null) w.i32(-1);
    else w.text(x.pending_id);
    w.text(x.code);
    w.i32(2);
    w.i16(x.flags);
    if (x.order_id === null) w.i32(-1);
    else w.int8(x.order_id);
    if (x.trade_id === null) w.i32(-1);
    else w.int8(x.trade_id);
    w.int8(lastUs);
  }
  w.ensure(2);
  w.i16(-1);
  const transfers_copy = w.done();
  const b = { id: [] as Col, dp: [] as Col, cp: [] as Col, dpe: [] as Col, cpe: [] as Col };
  for (const x of c.touched) {
    b.id.push(s(x.id)); b.dp.push(s(x.debits_posted)); b.cp.push(s(x.credits_posted)); b.dpe.push(s(x.debits_pending)); b.cpe.push(s(x.credits_pending));
  }
  const p = { id: [] as Col, status: [] as Col, resolved_by: [] as Col, posted: [] as Col };
  for (const x of c.pendings) {
    p.id.push(x.transfer.id); p.status.push(x.status); p.resolved_by.push(x.resolved_by); p.posted.push(s(x.posted_amount));
  }
  const holds = columns(19);
  for (const h of c.holds) {
    const v = [s(h.order_id), s(h.user_id), s(h.zone_id), h.pricing.currency, s(h.pricing.minor_units), h.pricing.tick_size, s(h.pricing.fee_bps),
      s(h.pricing.fee_per_kwh_minor), s(h.limit_price_ticks), s(h.qty_wh), s(h.held_minor), s(h.remaining_wh), s(h.remaining_minor), h.status,
      s(h.released_on_close_minor), s(h.created_at_ms), s(h.updated_at_ms), s(h.moved_to_order_id), s(h.bound_from_order_id)];
    v.forEach((x, i) => holds[i].push(x));
  }
  const escrows = columns(17);
  for (const e of c.escrows) {
    const v = [s(e.trade_id), s(e.order_id), s(e.buyer_id), s(e.seller_id), s(e.zone_id), s(e.interval_id), e.source, s(e.price_ticks), s(e.qty_wh),
      s(e.escrow_minor), s(e.released_minor), e.status, e.dispute_reason, s(e.created_at_ms), s(e.updated_at_ms), s(e.trade_pricing.fee_bps),
      s(e.trade_pricing.fee_per_kwh_minor)];
    v.forEach((x, i) => escrows[i].push(x));
  }
  const settlements = columns(10);
  for (const x of c.settlements) {
    const v = [s(x.trade_id), s(x.delivered_wh), s(x.buyer_paid_minor), s(x.seller_net_minor), s(x.fee_minor), s(x.rounding_minor), s(x.refund_minor),
      x.certificate_id, x.resolution, s(x.settled_at_ms)];
    v.forEach((y, i) => settlements[i].push(y));
  }
  const certificates = columns(12);
  for (const x of c.certificates) {
    const v = [x.id, s(x.trade_id), s(x.zone_id), s(x.interval_id), x.source, s(x.producer_id), s(x.owner_id), s(x.energy_wh), x.status,
      s(x.issued_at_ms), s(x.retired_at_ms), x.hash];
    v.forEach((y, i) => certificates[i].push(y));
  }
  const events = columns(10);
  for (const x of c.certificate_events) {
    const v = [s(x.seq), x.event_id, x.certificate_id, x.kind, s(x.from_user_id), s(x.to_user_id), s(x.energy_wh), s(x.at_ms), x.prev_hash, x.hash];
    v.forEach((y, i) => events[i].push(y));
  }
  let marker: Batch['marker'] = null;
  if (n > 0) marker = { table: 'transfer', key: String(c.transfers[n - 1].seq), id: c.transfers[n - 1].id };
  else if (c.certificate_events.length > 0) {
    const e = c.certificate_events[c.certificate_events.length - 1];
    marker = { table: 'event', key: String(e.seq), id: e.event_id };
  } else if (c.accounts.length > 0) marker = { table: 'account', key: String(c.accounts[c.accounts.length - 1].id), id: '' };
  else if (c.settlements.length > 0) marker = { table: 'settlement', key: String(c.settlements[c.settlements.length - 1].trade_id), id: '' };
  return {
    accounts: a, transfers_copy, transfer_ids, balances: b, pendings: p, holds, escrows, settlements, certificates, events, transfer_count: n, rows: c.rows, marker,
  };
}

/** 2000-01-01T00:00:00Z, PostgreSQL's epoch for binary timestamps, in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Writes rows in PostgreSQL's binary COPY format straight into a Buffer: no per-row strings, and
 * PostgreSQL skips parsing text numbers and timestamps. Integers here are safe integers (ids,
 * seq, µs since 2000), amounts non-negative bigints, text printable ASCII (transfer ids and codes
 * are validated as such), so every character is one byte.
 */
class CopyBinaryWriter {
  private buf: Buffer;
  private o = 0;
  /** Base-10000 digits of an amount, least significant first (scratch). */
  private readonly digits: number[] = [];

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(bytes: number): void {
    if (this.o + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.o + bytes));
    this.buf.copy(bigger, 0, 0, this.o);
    this.buf = bigger;
  }

  header(): void {
    this.ensure(19);
    this.o += this.buf.write('PGCOPY\n\xff\r\n\0', this.o, 'latin1');
    this.i32(0); // flags
    this.i32(0); // header extension length
  }

  i16(v: number): void {
    const b = this.buf, o = this.o;
    b[o] = (v >>> 8) & 255;
    b[o + 1] = v & 255;
    this.o = o + 2;
  }

  i32(v: number): void {
    const b = this.buf, o = this.o;
    b[o] = (v >>> 24) & 255;
    b[o + 1] = (v >>> 16) & 255;
    b[o + 2] = (v >>> 8) & 255;
    b[o + 3] = v & 255;
    this.o = o + 4;
  }

  /** An int8 field (length + value) from a safe integer. */
  int8(v: number): void {
    const hi = Math.floor(v / TWO_32);
    this.i32(8);
    this.i32(hi);
    this.i32(v - hi * TWO_32);
  }

  /** A text field from an ASCII string. */
  text(v: string): void {
    const n = v.length;
    this.i32(n);
    const b = this.buf, o = this.o;
    for (let i = 0; i < n; i++) b[o + i] = v.charCodeAt(i);
    this.o = o + n;
  }

  /** A numeric field from a non-negative bigint: ndigits, weight, sign, dscale, base-10000 digits. */
  numeric(v: bigint): void {
    const d = this.digits;
    d.length = 0;
    if (v <= MAX_SAFE_BIG) {
      for (let x = Number(v); x > 0; x = Math.floor(x / 10_000)) d.push(x % 10_000);
    } else {
      for (let x = v; x > 0n; x /= 10_000n) d.push(Number(x % 10_000n));
    }
    let low = 0;
    while (low < d.length && d[low] === 0) low++; // trailing zero groups are implied by the weight
    const ndigits = d.length - low;
    this.ensure(12 + 2 * ndigits);
    this.i32(8 + 2 * ndigits);
    this.i16(ndigits);
    this.i16(ndigits === 0 ? 0 : d.length - 1);
    this.i16(0); // sign: positive
    this.i16(0); // dscale: an integer
    for (let i = d.length - 1; i >= low; i--) this.i16(d[i]);
  }

  done(): Buffer {
    return this.buf.subarray(0, this.o);
  }
}

/**
 * Streams transfer rows with COPY (several times faster than INSERT … unnest here).
 *
 * postgres.js hands a COPY error (or a lost connection) only to a stream that is still open:
 * once the stream has ended, the error is dropped and 'finish' never comes. So as soon as the
 * stream has sent CopyDone (its final step) we queue a trivial statement behind it: it fails if
 * the COPY failed (the transaction is aborted or the connection gone), and the batch rolls back
 * instead of waiting forever.
 */
async function copyTransfers(tx: Tx, rows: Buffer, watch: Watch): Promise<{ check: Promise<void> }> {
  const stream = await watch(tx`copy ledger_transfers (id, seq, debit_account_id, credit_account_id, amount, pending_id, code, flags, order_id, trade_id, created_at) from stdin (format binary)`.writable());
  let streamError: Error | null = null;
  const finished = new Promise<void>((resolve, reject) => {
    stream.on('finish', resolve);
    stream.on('error', (err: Error) => {
      streamError ??= err;
      reject(err);
    });
  });
  finished.catch(() => {});
  const s = stream as unknown as { _final?: (cb: (err?: Error | null) => void) => void };
  const ended = new Promise<void>((resolve) => {
    // A stream that errors (the connection went away) before its final step never reaches it.
    stream.once('error', () => resolve());
    stream.once('close', () => resolve());
    const final = s._final;
    if (typeof final !== 'function') return resolve();
    s._final = (cb) => {
      final.call(stream, cb);
      resolve();
    };
  });
  stream.end(rows);
  await ended;
  const wrap = (err: unknown): Error => new Error(`COPY of the batch's transfers failed: ${(err as Error).message}`, { cause: err });
  // A stream that failed before CopyDone: nothing more may be sent on this connection.
  if (streamError !== null) throw wrap(streamError);
  // The check is queued now, in the turn CopyDone went out; the caller queues the batch's other
  // statements behind it in the same turn (they fail too if the COPY did) and awaits them together.
  const check = Promise.all([finished, watch(tx`select 1`)]).then(() => undefined, (err: unknown) => {
    throw wrap(err);
  });
  check.catch(() => {});
  return { check }; // not the bare promise: awaiting this must not wait for the check
}

/** A batch whose transaction holds its advisory lock (see migration 0006): the next batch may stream meanwhile. */
interface Pred {
  no: number;
  /** Its transaction id (xid8 as text). */
  xid: string;
}

/** How a batch is chained to the one flushed before it. */
interface Pipe {
  /** The previous batch's first attempt holds its lock (or null: it will not, start after it committed). */
  prevStarted: Promise<Pred | null>;
  /** The batch MAX_OPEN_BATCHES back has committed (at most that many batch transactions are open at once). */
  gate: Promise<void>;
  /** Tells the next batch that this one holds its lock (or null: wait for this one to commit). */
  signal: (p: Pred | null) => void;
}

/** SQLSTATE of ledger_await_batch(): the previous batch's transaction did not commit (retry after it). */
const PREDECESSOR_ABORTED = 'KX001';

function isPredecessorAborted(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === PREDECESSOR_ABORTED;
}

export interface FlushResult {
  transfers: number;
  /** seq of the last transfer known durable after this flush. */
  durable_seq: number;
}

export class LedgerStore {
  /** Resolves when every batch flushed so far has committed or failed for good; never rejects. */
  private committed: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private lastError: Error | null = null;
  /** Set while PostgreSQL is unreachable: the last connection error and when the outage began. */
  private outage: { since_ms: number; error: Error } | null = null;
  /** Callers of flush() waiting for their batch: told at once when an outage begins. */
  private readonly waiters = new Set<() => void>();
  private readonly flushBoundMs: number;
  private readonly maxBacklogRows: number;
  private readonly backoffMinMs: number;
  private readonly backoffMaxMs: number;
  /** Batches handed to PostgreSQL and not yet committed or failed. */
  in_flight = 0;
  /** Rows of those batches. */
  private backlogRows = 0;
  private retryCount = 0;
  durable_seq = 0;
  /** Pipelining (see write()): the last batch's "holds its lock" signal and the commit of the batch before it. */
  private started: Promise<Pred | null> = Promise.resolve(null);
  /** `previous` of the last batches flushed (the commit of the batch before each), newest last. */
  private readonly recentPrevious: Promise<void>[] = [];
  private nextBatchNo = 1;
  /** Advisory lock class of this store's batch transactions (random low bits: two stores never share a key); objid = attempt number. */
  private readonly lockClass = 0x6b77_0000 | Math.floor(Math.random() * 0x1_0000);

  /**
   * `sql` should allow at least 2 connections: batch n+1 streams its transfers while batch n
   * commits. Commits stay in flush order (see write()).
   */
  constructor(private readonly sql: Sql, readonly ledger: Ledger, options: LedgerStoreOptions = {}) {
    this.flushBoundMs = options.flush_unavailable_after_ms ?? FLUSH_UNAVAILABLE_AFTER_MS;
    this.maxBacklogRows = options.max_backlog_rows ?? MAX_BACKLOG_ROWS;
    this.backoffMinMs = options.retry_backoff_min_ms ?? RETRY_BACKOFF_MIN_MS;
    this.backoffMaxMs = options.retry_backoff_max_ms ?? RETRY_BACKOFF_MAX_MS;
    // A ledger rebuilt from storage is durable up to its last transfer; a recording one is not yet.
    this.durable_seq = ledger.recording ? 0 : ledger.core.transfer_count;
    ledger.startRecording();
    ledger.setAdmission(() => {
      if (this.available) return;
      const rows = this.backlogRows + ledger.unflushed_rows;
      if (rows >= this.maxBacklogRows) {
        throw new LedgerError('EXCHANGE_UNAVAILABLE', `the ledger cannot persist new operations now (${this.reason()}; ${rows} rows waiting); retry later`);
      }
    });
  }

  /**
   * Writes everything changed so far in one transaction; resolves when it has committed.
   * Batches commit in the order flush() was called.
   *
   * PostgreSQL unreachable (connection-class error): the batch is kept and retried, same bytes,
   * same order, with backoff, until it commits; meanwhile flush() rejects with EXCHANGE_UNAVAILABLE
   * (at once, or within FLUSH_UNAVAILABLE_AFTER_MS) and the operations are NOT durable yet (do not
   * acknowledge them). Any other failure (a constraint: a bug or corruption) stops the store: every
   * later flush fails too (the memory is ahead of the database): rebuild with loadLedger().
   */
  flush(): Promise<FlushResult> {
    // During an outage the changes stay recorded in the ledger (counted in the backlog): the first
    // flush after it takes them all as one batch, behind the batches already being retried.
    if (this.outage !== null && this.lastError === null) return Promise.reject(this.unavailable());
    const changes = this.ledger.takeChanges();
    const seq = this.ledger.core.transfer_count;
    const batch = changes.empty ? null : serialize(changes);
    const rows = batch?.rows ?? 0;
    const previous = this.committed;
    let pipe: Pipe | null = null;
    if (batch !== null) {
      let signal!: (p: Pred | null) => void;
      const started = new Promise<Pred | null>((resolve) => (signal = resolve));
      // Batch i may open its transaction once batch i − MAX_OPEN_BATCHES committed.
      const r = this.recentPrevious;
      const gate = r.length >= MAX_OPEN_BATCHES - 1 ? r[r.length - (MAX_OPEN_BATCHES - 1)] : Promise.resolve();
      pipe = { prevStarted: this.started, gate, signal };
      this.started = started;
      r.push(previous);
      if (r.length > MAX_OPEN_BATCHES) r.shift();
    }
    this.in_flight++;
    this.backlogRows += rows;
    const run = (async (): Promise<FlushResult> => {
      if (batch !== null) await this.write(batch, previous, pipe!);
      else await previous;
      if (this.lastError !== null) throw new Error(`ledger store stopped after a failed batch: ${this.lastError.message}`);
      if (seq > this.durable_seq) this.durable_seq = seq;
      return { transfers: batch?.transfer_count ?? 0, durable_seq: seq };
    })();
    this.committed = run.then(
      () => {
        this.in_flight--;
        this.backlogRows -= rows;
      },
      (err: Error) => {
        this.in_flight--;
        this.backlogRows -= rows;
        this.lastError ??= err;
      },
    );
    return this.bounded(run);
  }

  /** The caller's view of a batch: its result, or EXCHANGE_UNAVAILABLE without waiting long. */
  private bounded(run: Promise<FlushResult>): Promise<FlushResult> {
    if (this.outage !== null) {
      run.catch(() => {});
      return Promise.reject(this.unavailable());
    }
    return new Promise<FlushResult>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(down);
      };
      const down = (): void => {
        done();
        reject(this.unavailable());
      };
      const timer = setTimeout(() => {
        done();
        reject(new LedgerError('EXCHANGE_UNAVAILABLE', `the ledger batch did not commit within ${this.flushBoundMs} ms; it is kept and will be written, but is not durable yet`));
      }, this.flushBoundMs);
      this.waiters.add(down);
      run.then(
        (r) => {
          done();
          resolve(r);
        },
        (err: unknown) => {
          done();
          reject(err);
        },
      );
    });
  }

  private reason(): string {
    if (this.lastError !== null) return `the store stopped after a failed batch: ${this.lastError.message}`;
    if (this.outage !== null) return `PostgreSQL is unreachable (${this.outage.error.message})`;
    return 'ok';
  }

  private unavailable(): LedgerError {
    return new LedgerError('EXCHANGE_UNAVAILABLE', `the ledger cannot persist now: ${this.reason()}; pending changes are kept and written when it returns`);
  }

  private markUnavailable(err: Error): void {
    const first = this.outage === null;
    this.outage = { since_ms: this.outage?.since_ms ?? Date.now(), error: err };
    if (first) for (const w of [...this.waiters]) w();
  }

  /** true when the last batch committed (or none failed); false during an outage or after a fail-stop. */
  get available(): boolean {
    return this.outage === null && this.lastError === null;
  }

  status(): StoreStatus {
    return {
      available: this.available,
      state: this.lastError !== null ? 'stopped' : this.outage !== null ? 'unavailable' : 'ok',
      unavailable_since_ms: this.outage?.since_ms ?? null,
      error: this.lastError?.message ?? this.outage?.error.message ?? null,
      backlog_batches: this.in_flight,
      backlog_rows: this.backlogRows + this.ledger.unflushed_rows,
      durable_seq: this.durable_seq,
      retries: this.retryCount,
    };
  }

  /**
   * Flushes every `interval_ms` (group commit). A tick is skipped while
   * MAX_TIMED_FLUSHES_IN_FLIGHT batches are still committing (the next tick takes everything),
   * so a slow database gets bigger batches, not more connections. An outage does not stop the
   * timer (batches are kept and retried); a fail-stop does.
   */
  start(interval_ms: number): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => {
      if (this.in_flight >= MAX_TIMED_FLUSHES_IN_FLIGHT) return;
      this.flush().catch(() => {
        if (this.lastError !== null) this.stop();
      });
    }, interval_ms);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Resolves when every batch flushed so far has committed (waiting through an outage) or failed for good. */
  drained(): Promise<void> {
    return this.committed;
  }

  get error(): Error | null {
    return this.lastError;
  }

  /**
   * Batch n+1 is pipelined behind batch n: once n's transaction holds its advisory lock (its first
   * statements answered), n+1 begins on another connection and streams its accounts and transfers
   * (inserts of rows nobody else writes) while n finishes and waits for its commit to be flushed.
   * Then, in the same turn the COPY ends, n+1 queues `ledger_await_batch(n)` (migration 0006):
   * PostgreSQL blocks it until n's transaction has ended and aborts n+1 unless n committed; every
   * statement that reads or locks rows n may write (upserts, balances, foreign-key checks) is
   * queued behind it, and COMMIT is sent in the turn their answers arrive. So:
   *  - commits happen in flush order, and n+1 never commits without n (a crash leaves no gap);
   *  - the accounts' row locks are never taken by two batches at once;
   *  - no connection sits idle inside a transaction (a statement is always in flight, the waiting
   *    happens in PostgreSQL), and nothing is ever sent on a connection after a connection-class
   *    failure on it (postgres.js#1208, see writeTransaction);
   *  - at most two batch transactions are open at once (n+2 waits for n to commit first).
   * If n did not commit (KX001), n+1 rolled back and is retried once n has committed or failed for
   * good. A flush resolves only after every earlier batch resolved (results in flush order).
   *
   * A connection-class failure is retried on a fresh connection (the pool opens one), with
   * backoff, for as long as it takes, without pipelining; before each retry the batch's marker
   * row tells whether the failed attempt had in fact committed (a lost COMMIT reply), so nothing
   * is written twice or half.
   */
  private async write(b: Batch, previous: Promise<void>, pipe: Pipe): Promise<void> {
    let maybeCommitted = false;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          let pred: Pred | null = null;
          if (attempt === 0) {
            await pipe.gate; // never rejects
            pred = await pipe.prevStarted;
          }
          if (pred === null) await previous; // never rejects; the batch before commits (or fails for good) first
          if (this.lastError !== null) throw new Error(`an earlier batch failed: ${this.lastError.message}`);
          if (!maybeCommitted || !(await this.isCommitted(b))) await this.writeTransaction(b, pred, pipe);
          pipe.signal(null);
          // Committed: so has every earlier batch (n+1 commits only after n). Resolve in flush order.
          await previous;
          this.outage = null;
          return;
        } catch (err) {
          pipe.signal(null);
          // The previous batch did not commit and this one rolled back: retry once that one is done.
          if (isPredecessorAborted(err)) {
            if (this.lastError === null) continue;
            throw new Error(`an earlier batch failed: ${this.lastError.message}`);
          }
          if (this.lastError !== null || !isConnectionError(err)) throw await this.explain(err as Error, b);
          this.retryCount++;
          this.markUnavailable(err as Error);
          maybeCommitted = true; // the connection may have died after COMMIT reached the server
          await sleep(Math.min(this.backoffMaxMs, this.backoffMinMs * 2 ** Math.min(attempt, 20)));
        }
      }
    } finally {
      pipe.signal(null);
    }
  }

  /** Whether this batch is already stored (its marker row exists); a foreign row there is corruption. */
  private async isCommitted(b: Batch): Promise<boolean> {
    const m = b.marker;
    if (m === null) return false;
    let rows: { id: string }[];
    if (m.table === 'transfer') rows = await this.sql<{ id: string }[]>`select id from ledger_transfers where seq = ${m.key}`;
    else if (m.table === 'event') rows = await this.sql<{ id: string }[]>`select event_id as id from carbon_certificate_events where seq = ${m.key}`;
    else if (m.table === 'account') rows = await this.sql<{ id: string }[]>`select '' as id from ledger_accounts where id = ${m.key}`;
    else rows = await this.sql<{ id: string }[]>`select '' as id from ledger_settlements where trade_id = ${m.key}`;
    if (rows.length === 0) return false;
    if (rows[0].id !== m.id) {
      throw new LedgerError('LEDGER_CORRUPT', `${m.table} ${m.key} is stored as ${rows[0].id}, this batch has ${m.id}: another writer`);
    }
    return true;
  }

  /** A failed batch whose transfer ids are already stored was raced by another writer: say so. */
  private async explain(err: Error, b: Batch): Promise<Error> {
    if (this.lastError !== null || b.transfer_ids.length === 0) return err;
    try {
      const rows = await this.sql<{ id: string }[]>`select id from ledger_transfers where id = any(${b.transfer_ids}::text[]) limit 5`;
      if (rows.length > 0) {
        return new Error(`transfer ids already stored by another writer: ${rows.map((r) => r.id).join(', ')} (duplicate key); the batch rolled back. ${err.message}`);
      }
    } catch {
      // the database is unreachable: the original error says so
    }
    return err;
  }

  /**
   * One batch's transaction on a reserved connection, BEGIN/COMMIT driven here rather than by
   * sql.begin(): postgres.js 3.4.x throws an uncatchable TypeError (nextWrite on a null socket,
   * porsager/postgres#1208) when anything is sent on a connection that has already closed, and
   * sql.begin() sends its own ROLLBACK on one. So: nothing more is sent once a statement failed
   * with a connection-class error; every statement is sent in the same turn as the answer to the
   * one before (never on a connection that sat idle, so never after a close we did not hear of);
   * and a dead connection is not released (the pool already counts it as closed and reconnects it
   * for the next user).
   */
  private async writeTransaction(b: Batch, pred: Pred | null, pipe: Pipe): Promise<void> {
    const tx = await this.sql.reserve();
    let dead: unknown = null;
    const watch: Watch = (p) => {
      p.catch((err: unknown) => {
        if (dead === null && isConnectionError(err)) dead = err;
      });
      return p;
    };
    try {
      // BEGIN, the accounts and the COPY's start go out together (one turn, pipelined); a failure
      // of any of them surfaces through the awaited COPY start or through Promise.all below.
      const head: Promise<unknown>[] = [watch(tx`begin`)];
      // This batch's lock (the next batch waits on it, see write()) and its transaction id.
      // A new number per attempt: a retry never waits for the lock of an earlier attempt whose
      // backend may outlive its lost connection for a while.
      const no = this.nextBatchNo;
      this.nextBatchNo = (this.nextBatchNo % 0x7fff_fffe) + 1;
      const lock = watch(tx<{ xid: string }[]>`select pg_advisory_xact_lock(${this.lockClass}::int4, ${no}::int4), pg_current_xact_id()::text as xid`);
      head.push(lock);
      lock.then((rows) => pipe.signal({ no, xid: rows[0].xid }), () => pipe.signal(null));
      const a = b.accounts;
      if (a.id.length > 0) {
        head.push(watch(tx`insert into ledger_accounts (id, user_id, currency, kind, flags, created_at)
          select id, user_id, currency, kind, flags, ${tx.unsafe(TS('ms'))}
          from unnest(${a.id}::bigint[], ${a.user_id}::bigint[], ${a.currency}::text[], ${a.kind}::text[], ${a.flags}::int[], ${a.created}::bigint[])
            as r(id, user_id, currency, kind, flags, ms)`));
      }
      for (const h of head) h.catch(() => {});
      const queries: Promise<unknown>[] = [...head];
      if (b.transfer_count > 0) queries.push((await copyTransfers(tx, b.transfers_copy, watch)).check);
      // Pipelined behind the previous batch: everything below runs once that one committed (else KX001).
      if (pred !== null) queries.push(tx`select ledger_await_batch(${this.lockClass}::int4, ${pred.no}::int4, ${pred.xid}::xid8)`);
      const p = b.pendings;
      if (p.id.length > 0) {
        queries.push(tx`insert into ledger_pending_transfers (id, status, resolved_by, posted_amount)
          select * from unnest(${p.id}::text[], ${p.status}::text[], ${p.resolved_by}::text[], ${p.posted}::numeric[])
          on conflict (id) do update set status = excluded.status, resolved_by = excluded.resolved_by, posted_amount = excluded.posted_amount`);
      }
      this.writeFlows(tx, b, queries);
      const bal = b.balances;
      if (bal.id.length > 0) {
        queries.push(tx`update ledger_accounts a set debits_posted = r.dp, credits_posted = r.cp, debits_pending = r.dpe, credits_pending = r.cpe
          from unnest(${bal.id}::bigint[], ${bal.dp}::numeric[], ${bal.cp}::numeric[], ${bal.dpe}::numeric[], ${bal.cpe}::numeric[]) as r(id, dp, cp, dpe, cpe)
          where a.id = r.id`);
      }
      await Promise.all(queries.map(watch));
      await watch(tx`commit`);
    } catch (err) {
      if (dead === null && isConnectionError(err)) dead = err;
      if (dead === null) {
        // A statement failed on a live connection (sent in the same turn as the failure arrived).
        try {
          await tx`rollback`;
        } catch {
          // the failure being reported is the original one
        }
        tx.release();
      }
      throw err;
    }
    tx.release();
  }

  /** Queues the flow-table statements (in foreign-key order; they run pipelined, in order). */
  private writeFlows(tx: Tx, b: Batch, queries: Promise<unknown>[]): void {
    const h = b.holds;
    if (h[0].length > 0) {
      queries.push(tx`insert into ledger_order_holds (order_id, user_id, zone_id, currency, minor_units, tick_size, fee_bps, fee_per_kwh_minor, limit_price_ticks,
          qty_wh, held_minor, remaining_wh, remaining_minor, status, released_on_close_minor, created_at, updated_at, moved_to_order_id, bound_from_order_id)
        select c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, ${tx.unsafe(TS('c15'))}, ${tx.unsafe(TS('c16'))}, c17, c18
        from unnest(${h[0]}::bigint[], ${h[1]}::bigint[], ${h[2]}::bigint[], ${h[3]}::text[], ${h[4]}::smallint[], ${h[5]}::text[], ${h[6]}::int[],
                    ${h[7]}::numeric[], ${h[8]}::bigint[], ${h[9]}::bigint[], ${h[10]}::numeric[], ${h[11]}::bigint[], ${h[12]}::numeric[], ${h[13]}::text[],
                    ${h[14]}::numeric[], ${h[15]}::bigint[], ${h[16]}::bigint[], ${h[17]}::bigint[], ${h[18]}::bigint[])
          as r(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18)
        on conflict (order_id) do update set remaining_wh = excluded.remaining_wh, remaining_minor = excluded.remaining_minor, status = excluded.status,
          released_on_close_minor = excluded.released_on_close_minor, updated_at = excluded.updated_at, moved_to_order_id = excluded.moved_to_order_id`);
    }
    const e = b.escrows;
    if (e[0].length > 0) {
      queries.push(tx`insert into ledger_escrows (trade_id, order_id, buyer_id, seller_id, zone_id, interval_id, source, price_ticks, qty_wh, escrow_minor,
          released_minor, status, dispute_reason, created_at, updated_at, trade_fee_bps, trade_fee_per_kwh_minor)
        select c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, ${tx.unsafe(TS('c13'))}, ${tx.unsafe(TS('c14'))}, c15, c16
        from unnest(${e[0]}::bigint[], ${e[1]}::bigint[], ${e[2]}::bigint[], ${e[3]}::bigint[], ${e[4]}::bigint[], ${e[5]}::bigint[], ${e[6]}::text[],
                    ${e[7]}::bigint[], ${e[8]}::bigint[], ${e[9]}::numeric[], ${e[10]}::numeric[], ${e[11]}::text[], ${e[12]}::text[], ${e[13]}::bigint[],
                    ${e[14]}::bigint[], ${e[15]}::int[], ${e[16]}::numeric[])
          as r(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16)
        on conflict (trade_id) do update set status = excluded.status, dispute_reason = excluded.dispute_reason, updated_at = excluded.updated_at`);
    }
    const st = b.settlements;
    if (st[0].length > 0) {
      queries.push(tx`insert into ledger_settlements (trade_id, delivered_wh, buyer_paid_minor, seller_net_minor, fee_minor, rounding_minor, refund_minor,
          certificate_id, resolution, settled_at)
        select c0, c1, c2, c3, c4, c5, c6, c7, c8, ${tx.unsafe(TS('c9'))}
        from unnest(${st[0]}::bigint[], ${st[1]}::bigint[], ${st[2]}::numeric[], ${st[3]}::numeric[], ${st[4]}::numeric[], ${st[5]}::numeric[],
                    ${st[6]}::numeric[], ${st[7]}::text[], ${st[8]}::text[], ${st[9]}::bigint[])
          as r(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9)`);
    }
    const c = b.certificates;
    if (c[0].length > 0) {
      queries.push(tx`insert into carbon_certificates (id, trade_id, zone_id, interval_id, source, producer_id, owner_id, energy_wh, status, issued_at, retired_at, hash)
        select c0, c1, c2, c3, c4, c5, c6, c7, c8, ${tx.unsafe(TS('c9'))}, ${tx.unsafe(TS('c10'))}, c11
        from unnest(${c[0]}::text[], ${c[1]}::bigint[], ${c[2]}::bigint[], ${c[3]}::bigint[], ${c[4]}::text[], ${c[5]}::bigint[], ${c[6]}::bigint[],
                    ${c[7]}::bigint[], ${c[8]}::text[], ${c[9]}::bigint[], ${c[10]}::bigint[], ${c[11]}::text[])
          as r(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)
        on conflict (id) do update set owner_id = excluded.owner_id, status = excluded.status, retired_at = excluded.retired_at`);
    }
    const ev = b.events;
    if (ev[0].length > 0) {
      queries.push(tx`insert into carbon_certificate_events (seq, event_id, certificate_id, kind, from_user_id, to_user_id, energy_wh, at, at_ms, prev_hash, hash)
        select c0, c1, c2, c3, c4, c5, c6, ${tx.unsafe(TS('c7'))}, c7, c8, c9
        from unnest(${ev[0]}::bigint[], ${ev[1]}::text[], ${ev[2]}::text[], ${ev[3]}::text[], ${ev[4]}::bigint[], ${ev[5]}::bigint[], ${ev[6]}::bigint[],
                    ${ev[7]}::bigint[], ${ev[8]}::text[], ${ev[9]}::text[])
          as r(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9)`);
    }
  }
}

const num = (v: string | null): number | null => (v === null ? null : Number(v));

/**
 * Rebuilds the ledger from PostgreSQL, and loads the fee schedules (loadFeeSchedules). Zones are
 * configuration, not state: configure them on the returned ledger before placing new orders
 * (existing holds and escrows carry their own pricing snapshots).
 */
export async function loadLedger(sql: Sql): Promise<Ledger> {
  const ledger = new Ledger();
  const core = ledger.core;
  const accounts = await sql<{ id: string; user_id: string | null; currency: string; kind: string; flags: number; created_ms: string; dp: string; cp: string; dpe: string; cpe: string }[]>`
    select id, user_id, currency, kind, flags, ${sql.unsafe(MS('created_at'))} as created_ms,
           debits_posted as dp, credits_posted as cp, debits_pending as dpe, credits_pending as cpe
    from ledger_accounts order by id`;
  for (const r of accounts) {
    if (!(ACCOUNT_KINDS as readonly string[]).includes(r.kind)) throw new LedgerError('LEDGER_CORRUPT', `account ${r.id} has unknown kind ${r.kind}`);
    const a: Account = {
      id: Number(r.id), user_id: num(r.user_id), currency: r.currency, kind: r.kind as AccountKind, flags: r.flags, created_at_ms: Number(r.created_ms),
      debits_posted: 0n, credits_posted: 0n, debits_pending: 0n, credits_pending: 0n,
    };
    core.restoreAccount(a);
    if (a.user_id !== null) ledger.users.add(a.user_id);
  }
  // Replay every transfer in order through the core's own checks.
  let last = 0;
  for (;;) {
    const rows = await sql<{ id: string; seq: string; debit: string; credit: string; amount: string; pending_id: string | null; code: string; flags: number; order_id: string | null; trade_id: string | null; ms: string }[]>`
      select id, seq, debit_account_id as debit, credit_account_id as credit, amount, pending_id, code, flags, order_id, trade_id, ${sql.unsafe(MS('created_at'))} as ms
      from ledger_transfers where seq > ${last} order by seq limit ${REBUILD_PAGE_ROWS}`;
    for (const r of rows) {
      const seq = Number(r.seq);
      if (seq !== core.transfer_count + 1) throw new LedgerError('LEDGER_CORRUPT', `transfer seq ${seq} follows ${core.transfer_count}: a transfer is missing`);
      try {
        core.createTransfer({
          id: r.id, debit_account_id: Number(r.debit), credit_account_id: Number(r.credit), amount: BigInt(r.amount), code: r.code as TransferCode,
          flags: r.flags, pending_id: r.pending_id, order_id: num(r.order_id), trade_id: num(r.trade_id),
        }, Number(r.ms));
      } catch (err) {
        throw new LedgerError('LEDGER_CORRUPT', `stored transfer ${r.id} (seq ${seq}) does not replay: ${(err as Error).message}`);
      }
    }
    if (rows.length < REBUILD_PAGE_ROWS) break;
    last = Number(rows[rows.length - 1].seq);
  }
  for (const r of accounts) {
    const a = core.accounts[Number(r.id)]!;
    if (a.debits_posted !== BigInt(r.dp) || a.credits_posted !== BigInt(r.cp) || a.debits_pending !== BigInt(r.dpe) || a.credits_pending !== BigInt(r.cpe)) {
      throw new LedgerError('LEDGER_CORRUPT', `account ${r.id}: stored balances differ from the replay of its transfers`);
    }
  }
  const pendings = await sql<{ id: string; status: string; resolved_by: string | null; posted_amount: string }[]>`select * from ledger_pending_transfers`;
  if (pendings.length !== core.pendings.size) throw new LedgerError('LEDGER_CORRUPT', `stored pending transfers differ from the replay`);
  for (const r of pendings) {
    const p = core.pendings.get(r.id);
    if (p === undefined || p.status !== (r.status as PendingStatus) || p.resolved_by !== r.resolved_by || p.posted_amount !== BigInt(r.posted_amount)) {
      throw new LedgerError('LEDGER_CORRUPT', `pending transfer ${r.id}: stored state differs from the replay`);
    }
  }
  await loadFlows(sql, ledger);
  // Configuration, not state: the fee schedules by effective_from (zones still need configureZone).
  await loadFeeSchedules(sql, ledger);
  const verdict = ledger.certificates.verifyChain();
  if (!verdict.ok) throw new LedgerError('LEDGER_CORRUPT', `certificate chain broken at event ${verdict.seq}: ${verdict.reason}`);
  ledger.checkInvariants();
  return ledger;
}

/**
 * Gives the ledger every platform fee schedule of the `fee_schedules` table (configuration, like
 * zones: call it on start after configureZone, and again after an operator adds a schedule).
 * Returns how many were loaded.
 */
export async function loadFeeSchedules(sql: Sql, ledger: Ledger): Promise<number> {
  const rows = await sql<{ zone_id: string | null; fee_bps: number; fee_per_kwh_minor: string; from_ms: string }[]>`
    select zone_id, fee_bps, fee_per_kwh_minor, ${sql.unsafe(MS('effective_from'))} as from_ms from fee_schedules order by effective_from`;
  for (const r of rows) {
    ledger.setFeeSchedule({ zone_id: num(r.zone_id), effective_from_ms: Number(r.from_ms), fee_bps: r.fee_bps, fee_per_kwh_minor: BigInt(r.fee_per_kwh_minor) });
  }
  return rows.length;
}

async function loadFlows(sql: Sql, ledger: Ledger): Promise<void> {
  const holds = await sql<Record<string, string>[]>`
    select order_id, user_id, zone_id, currency, minor_units::text, tick_size, fee_bps::text, fee_per_kwh_minor, limit_price_ticks, qty_wh, held_minor,
           remaining_wh, remaining_minor, status, released_on_close_minor, ${sql.unsafe(MS('created_at'))} as created_ms, ${sql.unsafe(MS('updated_at'))} as updated_ms,
           moved_to_order_id, bound_from_order_id
    from ledger_order_holds order by order_id`;
  const pricings = new Map<string, Pricing>();
  const shared = (p: Pricing): Pricing => {
    const key = `${p.currency}|${p.minor_units}|${p.tick_size}|${p.fee_bps}|${p.fee_per_kwh_minor}`;
    let pricing = pricings.get(key);
    if (pricing === undefined) {
      pricing = p;
      pricings.set(key, pricing);
    }
    return pricing;
  };
  for (const r of holds) {
    const pricing = shared({ currency: r.currency, minor_units: Number(r.minor_units), tick_size: r.tick_size, fee_bps: Number(r.fee_bps), fee_per_kwh_minor: BigInt(r.fee_per_kwh_minor) });
    const h: OrderHold = {
      order_id: Number(r.order_id), user_id: Number(r.user_id), zone_id: Number(r.zone_id), pricing, limit_price_ticks: Number(r.limit_price_ticks),
      qty_wh: Number(r.qty_wh), held_minor: BigInt(r.held_minor), remaining_wh: Number(r.remaining_wh), remaining_minor: BigInt(r.remaining_minor),
      status: r.status as HoldStatus, released_on_close_minor: BigInt(r.released_on_close_minor), moved_to_order_id: num(r.moved_to_order_id),
      bound_from_order_id: num(r.bound_from_order_id), created_at_ms: Number(r.created_ms), updated_at_ms: Number(r.updated_ms),
    };
    ledger.holds.set(h.order_id, h);
  }
  const escrows = await sql<Record<string, string | null>[]>`
    select trade_id, order_id, buyer_id, seller_id, zone_id, interval_id, source, price_ticks, qty_wh, escrow_minor, released_minor, status, dispute_reason,
           ${sql.unsafe(MS('created_at'))} as created_ms, ${sql.unsafe(MS('updated_at'))} as updated_ms, trade_fee_bps::text, trade_fee_per_kwh_minor
    from ledger_escrows order by trade_id`;
  for (const r of escrows) {
    const hold = ledger.holds.get(Number(r.order_id));
    if (hold === undefined) throw new LedgerError('LEDGER_CORRUPT', `escrow of trade ${r.trade_id} names unknown order ${r.order_id}`);
    const e: TradeEscrow = {
      trade_id: Number(r.trade_id), order_id: hold.order_id, buyer_id: Number(r.buyer_id), seller_id: Number(r.seller_id), zone_id: Number(r.zone_id),
      interval_id: Number(r.interval_id), source: r.source as TradeSource, price_ticks: Number(r.price_ticks), qty_wh: Number(r.qty_wh), pricing: hold.pricing,
      // Rows from before migration 0007 were charged the hold's fee.
      trade_pricing: r.trade_fee_bps === null ? hold.pricing : shared({ ...hold.pricing, fee_bps: Number(r.trade_fee_bps), fee_per_kwh_minor: BigInt(r.trade_fee_per_kwh_minor!) }),
      escrow_minor: BigInt(r.escrow_minor!), released_minor: BigInt(r.released_minor!), status: r.status as EscrowStatus, dispute_reason: r.dispute_reason,
      created_at_ms: Number(r.created_ms), updated_at_ms: Number(r.updated_ms),
    };
    ledger.escrows.set(e.trade_id, e);
  }
  const settlements = await sql<Record<string, string | null>[]>`
    select trade_id, delivered_wh, buyer_paid_minor, seller_net_minor, fee_minor, rounding_minor, refund_minor, certificate_id, resolution,
           ${sql.unsafe(MS('settled_at'))} as settled_ms
    from ledger_settlements order by trade_id`;
  for (const r of settlements) {
    const st: Settlement = {
      trade_id: Number(r.trade_id), delivered_wh: Number(r.delivered_wh), buyer_paid_minor: BigInt(r.buyer_paid_minor!), seller_net_minor: BigInt(r.seller_net_minor!),
      fee_minor: BigInt(r.fee_minor!), rounding_minor: BigInt(r.rounding_minor!), refund_minor: BigInt(r.refund_minor!), certificate_id: r.certificate_id,
      resolution: r.resolution as SettlementResolution, settled_at_ms: Number(r.settled_ms),
    };
    ledger.settlements.set(st.trade_id, st);
    const e = ledger.escrows.get(st.trade_id);
    if (e !== undefined && st.resolution !== 'CANCELLED' && isRenewable(e.source)) ledger.settled_renewable_wh += st.delivered_wh;
  }
  const certs = await sql<Record<string, string | null>[]>`
    select id, trade_id, zone_id, interval_id, source, producer_id, owner_id, energy_wh, status, ${sql.unsafe(MS('issued_at'))} as issued_ms,
           ${sql.unsafe(MS('retired_at'))} as retired_ms, hash
    from carbon_certificates`;
  const certificates: Certificate[] = certs.map((r) => ({
    id: r.id!, trade_id: Number(r.trade_id), zone_id: Number(r.zone_id), interval_id: Number(r.interval_id), source: r.source as TradeSource,
    producer_id: Number(r.producer_id), energy_wh: Number(r.energy_wh), issued_at_ms: Number(r.issued_ms), hash: r.hash!, owner_id: Number(r.owner_id),
    status: r.status as Certificate['status'], retired_at_ms: num(r.retired_ms),
  }));
  const evs = await sql<Record<string, string | null>[]>`
    select seq, event_id, certificate_id, kind, from_user_id, to_user_id, energy_wh, at_ms, prev_hash, hash from carbon_certificate_events order by seq`;
  const events: CertificateEvent[] = evs.map((r) => ({
    seq: Number(r.seq), event_id: r.event_id!, certificate_id: r.certificate_id!, kind: r.kind as CertificateEventKind, from_user_id: num(r.from_user_id),
    to_user_id: num(r.to_user_id), energy_wh: Number(r.energy_wh), at_ms: Number(r.at_ms), prev_hash: r.prev_hash!, hash: r.hash!,
  }));
  ledger.certificates.restore(certificates, events);
}
