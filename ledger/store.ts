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

/** Transfer rows per COPY chunk written to the socket. */
export const COPY_CHUNK_ROWS = 4_096;
/** Transfers read per round trip during a rebuild. */
export const REBUILD_PAGE_ROWS = 50_000;
/** The timer (start()) skips a tick while this many batches are still committing. */
export const MAX_TIMED_FLUSHES_IN_FLIGHT = 3;

type Tx = postgres.TransactionSql<Record<string, never>>;
type Col = (string | null)[];

const s = (v: bigint | number | null): string | null => (v === null ? null : v.toString());

/** `timestamptz` from input-clock milliseconds, exactly. */
const TS = (col: string): string => `timestamptz 'epoch' + ${col} * interval '1 millisecond'`;
const MS = (col: string): string => `(extract(epoch from ${col}) * 1000)::bigint`;

interface Batch {
  accounts: { id: Col; user_id: Col; currency: Col; kind: Col; flags: Col; created: Col };
  /** ledger_transfers rows in COPY text format, in chunks. */
  transfers_copy: string[];
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
  const transfers_copy: string[] = [];
  const transfer_ids = new Array<string>(n);
  let lines: string[] = [];
  let lastMs = NaN;
  let lastTs = '';
  for (let i = 0; i < n; i++) {
    const x = c.transfers[i];
    transfer_ids[i] = x.id;
    if (x.created_at_ms !== lastMs) {
      lastMs = x.created_at_ms;
      lastTs = new Date(lastMs).toISOString();
    }
    lines.push(`${copyText(x.id)}\t${x.seq}\t${x.debit_account_id}\t${x.credit_account_id}\t${x.amount}\t${x.pending_id === null ? '\\N' : copyText(x.pending_id)}\t${x.code}\t${x.flags}\t${x.order_id ?? '\\N'}\t${x.trade_id ?? '\\N'}\t${lastTs}\n`);
    if (lines.length === COPY_CHUNK_ROWS) {
      transfers_copy.push(lines.join(''));
      lines = [];
    }
  }
  if (lines.length > 0) transfers_copy.push(lines.join(''));
  const b = { id: [] as Col, dp: [] as Col, cp: [] as Col, dpe: [] as Col, cpe: [] as Col };
  for (const x of c.touched) {
    b.id.push(s(x.id)); b.dp.push(s(x.debits_posted)); b.cp.push(s(x.credits_posted)); b.dpe.push(s(x.debits_pending)); b.cpe.push(s(x.credits_pending));
  }
  const p = { id: [] as Col, status: [] as Col, resolved_by: [] as Col, posted: [] as Col };
  for (const x of c.pendings) {
    p.id.push(x.transfer.id); p.status.push(x.status); p.resolved_by.push(x.resolved_by); p.posted.push(s(x.posted_amount));
  }
  const holds = columns(17);
  for (const h of c.holds) {
    const v = [s(h.order_id), s(h.user_id), s(h.zone_id), h.pricing.currency, s(h.pricing.minor_units), h.pricing.tick_size, s(h.pricing.fee_bps),
      s(h.pricing.fee_per_kwh_minor), s(h.limit_price_ticks), s(h.qty_wh), s(h.held_minor), s(h.remaining_wh), s(h.remaining_minor), h.status,
      s(h.released_on_close_minor), s(h.created_at_ms), s(h.updated_at_ms)];
    v.forEach((x, i) => holds[i].push(x));
  }
  const escrows = columns(15);
  for (const e of c.escrows) {
    const v = [s(e.trade_id), s(e.order_id), s(e.buyer_id), s(e.seller_id), s(e.zone_id), s(e.interval_id), e.source, s(e.price_ticks), s(e.qty_wh),
      s(e.escrow_minor), s(e.released_minor), e.status, e.dispute_reason, s(e.created_at_ms), s(e.updated_at_ms)];
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
  return { accounts: a, transfers_copy, transfer_ids, balances: b, pendings: p, holds, escrows, settlements, certificates, events, transfer_count: n };
}

/** Escapes a text value for COPY text format (ids are printable ASCII; only \\ needs care). */
function copyText(v: string): string {
  return v.includes('\\') ? v.replace(/\\/g, '\\\\') : v;
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
async function copyTransfers(tx: Tx, chunks: string[]): Promise<void> {
  const stream = await tx`copy ledger_transfers (id, seq, debit_account_id, credit_account_id, amount, pending_id, code, flags, order_id, trade_id, created_at) from stdin`.writable();
  const finished = new Promise<void>((resolve, reject) => {
    stream.on('finish', resolve);
    stream.on('error', reject);
  });
  finished.catch(() => {});
  const s = stream as unknown as { _final?: (cb: (err?: Error | null) => void) => void };
  const ended = new Promise<void>((resolve) => {
    const final = s._final;
    if (typeof final !== 'function') return resolve();
    s._final = (cb) => {
      final.call(stream, cb);
      resolve();
    };
  });
  stream.end(chunks.length === 1 ? chunks[0] : chunks.join(''));
  await ended;
  try {
    await Promise.all([finished, tx`select 1`]);
  } catch (err) {
    throw new Error(`COPY of the batch's transfers failed: ${(err as Error).message}`);
  }
}

export interface FlushResult {
  transfers: number;
  /** seq of the last transfer known durable after this flush. */
  durable_seq: number;
}

export class LedgerStore {
  /** Resolves when every batch flushed so far has committed or failed; never rejects. */
  private committed: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private lastError: Error | null = null;
  /** Batches handed to PostgreSQL and not yet committed or failed. */
  in_flight = 0;
  durable_seq = 0;

  /**
   * `sql` should allow at least 2 connections: batch n+1 streams its transfers while batch n
   * commits. Commits stay in flush order (see write()).
   */
  constructor(private readonly sql: Sql, readonly ledger: Ledger) {
    // A ledger rebuilt from storage is durable up to its last transfer; a recording one is not yet.
    this.durable_seq = ledger.recording ? 0 : ledger.core.transfer_count;
    ledger.startRecording();
  }

  /**
   * Writes everything changed so far in one transaction; resolves when it has committed.
   * Batches commit in the order flush() was called. After a failed batch every later flush
   * fails too (the memory is ahead of the database): rebuild with loadLedger().
   */
  flush(): Promise<FlushResult> {
    const changes = this.ledger.takeChanges();
    const seq = this.ledger.core.transfer_count;
    const batch = changes.empty ? null : serialize(changes);
    const previous = this.committed;
    this.in_flight++;
    const run = (async (): Promise<FlushResult> => {
      if (batch !== null) await this.write(batch, previous);
      else await previous;
      if (this.lastError !== null) throw new Error(`ledger store stopped after a failed batch: ${this.lastError.message}`);
      this.durable_seq = seq;
      return { transfers: batch?.transfer_count ?? 0, durable_seq: seq };
    })();
    this.committed = run.then(
      () => {
        this.in_flight--;
      },
      (err: Error) => {
        this.in_flight--;
        this.lastError ??= err;
      },
    );
    return run;
  }

  /**
   * Flushes every `interval_ms` (group commit). A tick is skipped while
   * MAX_TIMED_FLUSHES_IN_FLIGHT batches are still committing (the next tick takes everything),
   * so a slow database gets bigger batches, not more connections. An error stops the timer.
   */
  start(interval_ms: number): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => {
      if (this.in_flight >= MAX_TIMED_FLUSHES_IN_FLIGHT) return;
      this.flush().catch(() => this.stop());
    }, interval_ms);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  get error(): Error | null {
    return this.lastError;
  }

  /**
   * Phase 1 appends rows no other batch can touch (new accounts, the transfers, by COPY) and may
   * run while the previous batch is still committing. Phase 2 waits for that commit, then
   * pipelines the upserts and the balance update and commits: so commits happen in order, a
   * failed batch makes every later one roll back, and the accounts' row locks are never taken
   * by two batches at once (no deadlock).
   */
  private async write(b: Batch, previous: Promise<void>): Promise<void> {
    try {
      await this.writeTransaction(b, previous);
    } catch (err) {
      throw await this.explain(err as Error, b);
    }
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

  private async writeTransaction(b: Batch, previous: Promise<void>): Promise<void> {
    await this.sql.begin(async (tx) => {
      const a = b.accounts;
      if (a.id.length > 0) {
        await tx`insert into ledger_accounts (id, user_id, currency, kind, flags, created_at)
          select id, user_id, currency, kind, flags, ${tx.unsafe(TS('ms'))}
          from unnest(${a.id}::bigint[], ${a.user_id}::bigint[], ${a.currency}::text[], ${a.kind}::text[], ${a.flags}::int[], ${a.created}::bigint[])
            as r(id, user_id, currency, kind, flags, ms)`;
      }
      if (b.transfer_count > 0) await copyTransfers(tx, b.transfers_copy);
      await previous;
      if (this.lastError !== null) throw new Error(`an earlier batch failed: ${this.lastError.message}`);
      const queries: Promise<unknown>[] = [];
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
      await Promise.all(queries);
    });
  }

  /** Queues the flow-table statements (in foreign-key order; they run pipelined, in order). */
  private writeFlows(tx: Tx, b: Batch, queries: Promise<unknown>[]): void {
    const h = b.holds;
    if (h[0].length > 0) {
      queries.push(tx`insert into ledger_order_holds (order_id, user_id, zone_id, currency, minor_units, tick_size, fee_bps, fee_per_kwh_minor, limit_price_ticks,
          qty_wh, held_minor, remaining_wh, remaining_minor, status, released_on_close_minor, created_at, updated_at)
        select c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, ${tx.unsafe(TS('c15'))}, ${tx.unsafe(TS('c16'))}
        from unnest(${h[0]}::bigint[], ${h[1]}::bigint[], ${h[2]}::bigint[], ${h[3]}::text[], ${h[4]}::smallint[], ${h[5]}::text[], ${h[6]}::int[],
                    ${h[7]}::numeric[], ${h[8]}::bigint[], ${h[9]}::bigint[], ${h[10]}::numeric[], ${h[11]}::bigint[], ${h[12]}::numeric[], ${h[13]}::text[],
                    ${h[14]}::numeric[], ${h[15]}::bigint[], ${h[16]}::bigint[])
          as r(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16)
        on conflict (order_id) do update set remaining_wh = excluded.remaining_wh, remaining_minor = excluded.remaining_minor, status = excluded.status,
          released_on_close_minor = excluded.released_on_close_minor, updated_at = excluded.updated_at`);
    }
    const e = b.escrows;
    if (e[0].length > 0) {
      queries.push(tx`insert into ledger_escrows (trade_id, order_id, buyer_id, seller_id, zone_id, interval_id, source, price_ticks, qty_wh, escrow_minor,
          released_minor, status, dispute_reason, created_at, updated_at)
        select c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, ${tx.unsafe(TS('c13'))}, ${tx.unsafe(TS('c14'))}
        from unnest(${e[0]}::bigint[], ${e[1]}::bigint[], ${e[2]}::bigint[], ${e[3]}::bigint[], ${e[4]}::bigint[], ${e[5]}::bigint[], ${e[6]}::text[],
                    ${e[7]}::bigint[], ${e[8]}::bigint[], ${e[9]}::numeric[], ${e[10]}::numeric[], ${e[11]}::text[], ${e[12]}::text[], ${e[13]}::bigint[],
                    ${e[14]}::bigint[])
          as r(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14)
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
 * Rebuilds the ledger from PostgreSQL. Zones are configuration, not state: configure them on the
 * returned ledger before placing new orders (existing holds carry their own pricing snapshot).
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
  const verdict = ledger.certificates.verifyChain();
  if (!verdict.ok) throw new LedgerError('LEDGER_CORRUPT', `certificate chain broken at event ${verdict.seq}: ${verdict.reason}`);
  ledger.checkInvariants();
  return ledger;
}

async function loadFlows(sql: Sql, ledger: Ledger): Promise<void> {
  const holds = await sql<Record<string, string>[]>`
    select order_id, user_id, zone_id, currency, minor_units::text, tick_size, fee_bps::text, fee_per_kwh_minor, limit_price_ticks, qty_wh, held_minor,
           remaining_wh, remaining_minor, status, released_on_close_minor, ${sql.unsafe(MS('created_at'))} as created_ms, ${sql.unsafe(MS('updated_at'))} as updated_ms
    from ledger_order_holds order by order_id`;
  const pricings = new Map<string, Pricing>();
  for (const r of holds) {
    const key = `${r.currency}|${r.minor_units}|${r.tick_size}|${r.fee_bps}|${r.fee_per_kwh_minor}`;
    let pricing = pricings.get(key);
    if (pricing === undefined) {
      pricing = { currency: r.currency, minor_units: Number(r.minor_units), tick_size: r.tick_size, fee_bps: Number(r.fee_bps), fee_per_kwh_minor: BigInt(r.fee_per_kwh_minor) };
      pricings.set(key, pricing);
    }
    const h: OrderHold = {
      order_id: Number(r.order_id), user_id: Number(r.user_id), zone_id: Number(r.zone_id), pricing, limit_price_ticks: Number(r.limit_price_ticks),
      qty_wh: Number(r.qty_wh), held_minor: BigInt(r.held_minor), remaining_wh: Number(r.remaining_wh), remaining_minor: BigInt(r.remaining_minor),
      status: r.status as HoldStatus, released_on_close_minor: BigInt(r.released_on_close_minor), created_at_ms: Number(r.created_ms), updated_at_ms: Number(r.updated_ms),
    };
    ledger.holds.set(h.order_id, h);
  }
  const escrows = await sql<Record<string, string | null>[]>`
    select trade_id, order_id, buyer_id, seller_id, zone_id, interval_id, source, price_ticks, qty_wh, escrow_minor, released_minor, status, dispute_reason,
           ${sql.unsafe(MS('created_at'))} as created_ms, ${sql.unsafe(MS('updated_at'))} as updated_ms
    from ledger_escrows order by trade_id`;
  for (const r of escrows) {
    const hold = ledger.holds.get(Number(r.order_id));
    if (hold === undefined) throw new LedgerError('LEDGER_CORRUPT', `escrow of trade ${r.trade_id} names unknown order ${r.order_id}`);
    const e: TradeEscrow = {
      trade_id: Number(r.trade_id), order_id: hold.order_id, buyer_id: Number(r.buyer_id), seller_id: Number(r.seller_id), zone_id: Number(r.zone_id),
      interval_id: Number(r.interval_id), source: r.source as TradeSource, price_ticks: Number(r.price_ticks), qty_wh: Number(r.qty_wh), pricing: hold.pricing,
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
