/**
 * Wallet statements: a user's transfers in one currency over a period [from, to), with the
 * effect of each on the user's available, held and escrow balances and the balances after it,
 * read from PostgreSQL (committed data only). JSON (amounts as decimal strings in minor units)
 * and CSV (amounts in currency units).
 *
 * Available = posted credits − posted debits − pending debits (what the user can spend); held
 * and escrow are posted balances. So a pending withdrawal lowers available when it is created,
 * and its post or void settles the difference.
 */
import type { Sql } from '../schema/db.js';
import { LedgerError } from './errors.js';
import { formatMinor, MAX_MINOR_UNITS } from './money.js';

/** A statement lists at most this many transfers (ask for a shorter period beyond that). */
export const MAX_STATEMENT_LINES = 100_000;

export interface StatementRequest {
  user_id: number;
  currency: string;
  /** Currency decimals, for the CSV (e.g. 2 for EUR). */
  minor_units: number;
  from_ms: number;
  to_ms: number;
}

export interface Balances3 {
  available_minor: string;
  held_minor: string;
  escrow_minor: string;
}

export interface StatementLine extends Balances3 {
  seq: number;
  at: string;
  transfer_id: string;
  code: string;
  kind: 'POSTED' | 'PENDING' | 'POST_PENDING' | 'VOID_PENDING';
  order_id: number | null;
  trade_id: number | null;
  amount_minor: string;
  available_delta_minor: string;
  held_delta_minor: string;
  escrow_delta_minor: string;
}

export interface Statement {
  user_id: number;
  currency: string;
  minor_units: number;
  from: string;
  to: string;
  opening: Balances3;
  closing: Balances3;
  lines: StatementLine[];
}

type Kind = 'AVAILABLE' | 'HELD' | 'ESCROW';
const KIND_BY_FLAGS: Record<number, StatementLine['kind']> = { 0: 'POSTED', 1: 'PENDING', 2: 'POST_PENDING', 4: 'VOID_PENDING' };

/**
 * The effect of one transfer on one side. Posted transfers and posts move posted balances; a
 * pending debit reserves available; a post or void releases the reservation of its pending.
 */
function effect(kind: Kind, side: 'debit' | 'credit', flags: number, amount: bigint, pending_amount: bigint): bigint {
  const posted = flags === 0 || flags === 2 ? amount : 0n;
  if (side === 'credit') return posted;
  let delta = -posted;
  if (kind === 'AVAILABLE') {
    if (flags === 1) delta -= amount;
    if (flags === 2 || flags === 4) delta += pending_amount;
  }
  return delta;
}

export async function walletStatement(sql: Sql, req: StatementRequest): Promise<Statement> {
  if (!Number.isInteger(req.minor_units) || req.minor_units < 0 || req.minor_units > MAX_MINOR_UNITS) {
    throw new LedgerError('INVALID_AMOUNT', `minor_units must be an integer 0..${MAX_MINOR_UNITS}`);
  }
  if (!(req.from_ms < req.to_ms)) throw new LedgerError('INVALID_AMOUNT', `the period must have from < to`);
  const accounts = await sql<{ id: string; kind: Kind }[]>`
    select id, kind from ledger_accounts where user_id = ${req.user_id} and currency = ${req.currency} and kind in ('AVAILABLE', 'HELD', 'ESCROW')`;
  if (accounts.length === 0) throw new LedgerError('ACCOUNT_NOT_FOUND', `user ${req.user_id} has no ${req.currency} accounts`);
  const kindOf = new Map(accounts.map((a) => [a.id, a.kind]));
  const ids = accounts.map((a) => a.id);
  const from = new Date(req.from_ms).toISOString();
  const to = new Date(req.to_ms).toISOString();
  const opening = await sql<{ account: string; side: 'debit' | 'credit'; flags: number; amount: string; pending_amount: string }[]>`
    select t.debit_account_id as account, 'debit' as side, t.flags, sum(t.amount)::text as amount, coalesce(sum(p.amount), 0)::text as pending_amount
      from ledger_transfers t left join ledger_transfers p on p.id = t.pending_id
      where array[t.debit_account_id, t.credit_account_id] && ${ids}::bigint[] and t.debit_account_id = any(${ids}::bigint[]) and t.created_at < ${from}
      group by 1, 3
    union all
    select t.credit_account_id, 'credit', t.flags, sum(t.amount)::text, '0'
      from ledger_transfers t
      where array[t.debit_account_id, t.credit_account_id] && ${ids}::bigint[] and t.credit_account_id = any(${ids}::bigint[]) and t.created_at < ${from}
      group by 1, 3`;
  const balance: Record<Kind, bigint> = { AVAILABLE: 0n, HELD: 0n, ESCROW: 0n };
  for (const r of opening) {
    const kind = kindOf.get(r.account)!;
    balance[kind] += effect(kind, r.side, r.flags, BigInt(r.amount), BigInt(r.pending_amount));
  }
  const openingBalances = snapshot(balance);
  const rows = await sql<{ seq: string; id: string; debit: string; credit: string; amount: string; flags: number; code: string; order_id: string | null; trade_id: string | null; at: Date; pending_amount: string | null }[]>`
    select t.seq, t.id, t.debit_account_id as debit, t.credit_account_id as credit, t.amount, t.flags, t.code, t.order_id, t.trade_id, t.created_at as at,
           p.amount as pending_amount
    from ledger_transfers t left join ledger_transfers p on p.id = t.pending_id
    where array[t.debit_account_id, t.credit_account_id] && ${ids}::bigint[]
      and t.created_at >= ${from} and t.created_at < ${to}
    order by t.seq
    limit ${MAX_STATEMENT_LINES + 1}`;
  if (rows.length > MAX_STATEMENT_LINES) throw new LedgerError('INVALID_AMOUNT', `more than ${MAX_STATEMENT_LINES} transfers in the period; ask for a shorter one`);
  const lines: StatementLine[] = rows.map((r) => {
    const delta: Record<Kind, bigint> = { AVAILABLE: 0n, HELD: 0n, ESCROW: 0n };
    const amount = BigInt(r.amount);
    const pending = r.pending_amount === null ? 0n : BigInt(r.pending_amount);
    const dk = kindOf.get(r.debit);
    const ck = kindOf.get(r.credit);
    if (dk !== undefined) delta[dk] += effect(dk, 'debit', r.flags, amount, pending);
    if (ck !== undefined) delta[ck] += effect(ck, 'credit', r.flags, amount, pending);
    for (const k of ['AVAILABLE', 'HELD', 'ESCROW'] as const) balance[k] += delta[k];
    return {
      seq: Number(r.seq), at: r.at.toISOString(), transfer_id: r.id, code: r.code, kind: KIND_BY_FLAGS[r.flags], order_id: r.order_id === null ? null : Number(r.order_id),
      trade_id: r.trade_id === null ? null : Number(r.trade_id), amount_minor: r.amount, available_delta_minor: delta.AVAILABLE.toString(),
      held_delta_minor: delta.HELD.toString(), escrow_delta_minor: delta.ESCROW.toString(), ...snapshot(balance),
    };
  });
  return { user_id: req.user_id, currency: req.currency, minor_units: req.minor_units, from, to, opening: openingBalances, closing: snapshot(balance), lines };
}

function snapshot(b: Record<Kind, bigint>): Balances3 {
  return { available_minor: b.AVAILABLE.toString(), held_minor: b.HELD.toString(), escrow_minor: b.ESCROW.toString() };
}

const CSV_COLUMNS = ['seq', 'at', 'transfer_id', 'code', 'kind', 'order_id', 'trade_id', 'amount', 'available_change', 'held_change', 'escrow_change', 'available', 'held', 'escrow'];

function csvField(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** CSV with a header row; amounts in currency units (e.g. 12.34), one row per transfer. */
export function statementToCsv(s: Statement): string {
  const m = (v: string): string => formatMinor(BigInt(v), s.minor_units);
  const out = [CSV_COLUMNS.join(',')];
  for (const l of s.lines) {
    out.push([
      String(l.seq), l.at, l.transfer_id, l.code, l.kind, l.order_id === null ? '' : String(l.order_id), l.trade_id === null ? '' : String(l.trade_id),
      m(l.amount_minor), m(l.available_delta_minor), m(l.held_delta_minor), m(l.escrow_delta_minor), m(l.available_minor), m(l.held_minor), m(l.escrow_minor),
    ].map(csvField).join(','));
  }
  return out.join('\n') + '\n';
}
