// Read models projected from the journal: `orders` and `trades`. The projector tails each zone's
// journal from its offset (engine_projection_offsets) and applies a batch of rows at a time; every
// write is idempotent (inserts skip existing ids, updates set absolute values), so a batch
// re-applied after a crash or a dropped connection gives the same rows, and the offset is moved
// last. No explicit transaction: postgres.js throws from a timer when it sends ROLLBACK on a
// connection that has just dropped, which would take the process down during an outage.
// One projector per database (the runtime's); it never slows the hot path: it runs behind the
// journal, not in it. rebuildProjections() deletes the read-model rows of the zones and replays
// their whole journal through the same code.
import type { Sql } from '../../schema/db.js';
import type { Logger } from '../../schema/log.js';
import type { EngineEvent } from '../core/types.js';
import { decodeEvents, JOURNAL_KIND_COMMAND } from './codec.js';
import { tradeIdFor } from './ids.js';
import { withDeadline } from './pg.js';

export const PROJECTION_NAME = 'orders_trades';

interface OrderRow {
  id: number;
  zone_id: number;
  interval_id: number;
  user_id: number;
  client_order_id: string;
  side: string;
  order_type: string;
  source: string;
  stp_mode: string;
  price_ticks: number;
  qty_wh: number;
  filled_wh: number;
  status: string;
  cancel_reason: string | null;
  expires_at: string | null;
  zone_seq: number;
  created_at: string;
  updated_at: string;
}

interface OrderPatch {
  id: number;
  /** Remaining quantity after the batch (filled = total − remaining), or null when filled_abs says it. */
  remaining: number | null;
  filled_abs: number | null;
  status: string | null;
  cancel_reason: string | null;
  price_ticks: number | null;
  qty_wh: number | null;
  updated_at: string;
}

interface TradeRow {
  id: number;
  zone_id: number;
  interval_id: number;
  buy_order_id: number;
  sell_order_id: number;
  buyer_id: number;
  seller_id: number;
  maker_side: string;
  source: string;
  price_ticks: number;
  qty_wh: number;
  zone_seq: number;
  executed_at: string;
}

/** Accumulates one batch of journal rows into final row states, so each order is written once. */
class Batch {
  readonly inserts = new Map<number, OrderRow>();
  readonly patches = new Map<number, OrderPatch>();
  readonly trades: TradeRow[] = [];

  apply(zone_id: number, seq: number, ts_ms: number, events: EngineEvent[]): void {
    const at = new Date(ts_ms).toISOString();
    for (const ev of events) {
      switch (ev.type) {
        case 'ACCEPTED':
          this.inserts.set(ev.order_id, {
            id: ev.order_id,
            zone_id,
            interval_id: ev.interval_id,
            user_id: ev.user_id,
            client_order_id: ev.client_order_id,
            side: ev.side,
            order_type: ev.order_type,
            source: ev.source,
            stp_mode: ev.stp,
            price_ticks: ev.price_ticks,
            qty_wh: ev.qty_wh,
            filled_wh: 0,
            status: 'ACTIVE',
            cancel_reason: null,
            expires_at: ev.expire_at_ms > 0 ? new Date(ev.expire_at_ms).toISOString() : null,
            zone_seq: seq,
            created_at: at,
            updated_at: at,
          });
          break;
        case 'FILL': {
          const buyIsTaker = ev.taker_side === 'BUY';
          this.fill(ev.maker_order_id, ev.qty_wh, ev.maker_remaining_wh, at);
          this.fill(ev.taker_order_id, ev.qty_wh, ev.taker_remaining_wh, at);
          this.trades.push({
            id: tradeIdFor(zone_id, ev.trade_id),
            zone_id,
            interval_id: ev.interval_id,
            buy_order_id: buyIsTaker ? ev.taker_order_id : ev.maker_order_id,
            sell_order_id: buyIsTaker ? ev.maker_order_id : ev.taker_order_id,
            buyer_id: buyIsTaker ? ev.taker_user_id : ev.maker_user_id,
            seller_id: buyIsTaker ? ev.maker_user_id : ev.taker_user_id,
            maker_side: buyIsTaker ? 'SELL' : 'BUY',
            source: ev.source,
            price_ticks: ev.price_ticks,
            qty_wh: ev.qty_wh,
            zone_seq: seq,
            executed_at: at,
          });
          break;
        }
        case 'CANCELLED':
          this.close(ev.order_id, 'CANCELLED', ev.reason, ev.filled_wh, at);
          break;
        case 'EXPIRED':
          this.close(ev.order_id, 'EXPIRED', null, ev.filled_wh, at);
          break;
        case 'AMENDED': {
          const status = ev.filled_wh > 0 ? 'PARTIALLY_FILLED' : 'ACTIVE';
          const row = this.inserts.get(ev.order_id);
          if (row !== undefined) Object.assign(row, { price_ticks: ev.price_ticks, qty_wh: ev.qty_wh, filled_wh: ev.filled_wh, status, updated_at: at });
          else Object.assign(this.patch(ev.order_id, at), { price_ticks: ev.price_ticks, qty_wh: ev.qty_wh, filled_abs: null, remaining: ev.remaining_wh, status, cancel_reason: null });
          break;
        }
        default:
          break;
      }
    }
  }

  private patch(id: number, at: string): OrderPatch {
    let p = this.patches.get(id);
    if (p === undefined) {
      p = { id, remaining: null, filled_abs: null, status: null, cancel_reason: null, price_ticks: null, qty_wh: null, updated_at: at };
      this.patches.set(id, p);
    }
    p.updated_at = at;
    return p;
  }

  private fill(id: number, qty: number, remaining: number, at: string): void {
    const status = remaining === 0 ? 'MATCHED' : 'PARTIALLY_FILLED';
    const row = this.inserts.get(id);
    if (row !== undefined) {
      row.filled_wh += qty;
      row.status = status;
      row.updated_at = at;
      return;
    }
    const p = this.patch(id, at);
    p.remaining = remaining;
    p.filled_abs = null;
    p.status = status;
  }

  private close(id: number, status: string, reason: string | null, filled: number, at: string): void {
    const row = this.inserts.get(id);
    if (row !== undefined) {
      Object.assign(row, { status, cancel_reason: reason, filled_wh: filled, updated_at: at });
      return;
    }
    Object.assign(this.patch(id, at), { status, cancel_reason: reason, filled_abs: filled, remaining: null });
  }
}

export interface ProjectorOptions {
  zones: number[];
  /** Journal rows per batch. */
  batch_rows?: number;
  poll_ms?: number;
  /** A batch (or connecting) still running after this is abandoned and its connection dropped. Default 10,000. */
  batch_timeout_ms?: number;
  /** Opens the projector's own connection (max 1); without it, `sql` is used and a stuck connection cannot be dropped. */
  connect?: () => Sql;
  log?: Logger;
}

/** Applies journal rows after each zone's offset until none are left; returns rows applied. */
export async function projectOnce(sql: Sql, zones: number[], batch_rows = 5000): Promise<number> {
  let total = 0;
  for (const zone_id of zones) {
    for (;;) {
      const n = await projectBatch(sql, zone_id, batch_rows);
      total += n;
      if (n < batch_rows) break;
    }
  }
  return total;
}

async function projectBatch(sql: Sql, zone_id: number, batch_rows: number): Promise<number> {
  {
    const tx = sql;
    const [off] = await tx<{ seq: string }[]>`
      select seq from engine_projection_offsets where projection = ${PROJECTION_NAME} and zone_id = ${zone_id}`;
    const from = off === undefined ? 0 : Number(off.seq);
    const rows = await tx<{ seq: string; kind: number; payload: Uint8Array; ts_ms: string }[]>`
      select seq, kind, payload, (extract(epoch from ts) * 1000)::bigint as ts_ms from engine_journal
      where zone_id = ${zone_id} and seq > ${from} order by seq limit ${batch_rows}`;
    if (rows.length === 0) return 0;
    const b = new Batch();
    for (const r of rows) {
      if (r.kind !== JOURNAL_KIND_COMMAND) continue;
      const ts_ms = Number(r.ts_ms);
      b.apply(zone_id, Number(r.seq), ts_ms, decodeEvents(r.payload, zone_id, ts_ms));
    }
    // Updates first: an order closed in this batch frees its client order id for an insert.
    if (b.patches.size > 0) {
      await tx`
        update orders o set
          filled_wh = coalesce(u.filled_abs, coalesce(u.qty_wh, o.qty_wh) - u.remaining, o.filled_wh),
          status = coalesce(u.status, o.status),
          cancel_reason = case when coalesce(u.status, o.status) = 'CANCELLED' then coalesce(u.cancel_reason, o.cancel_reason) else null end,
          price_ticks = coalesce(u.price_ticks, o.price_ticks),
          qty_wh = coalesce(u.qty_wh, o.qty_wh),
          updated_at = u.updated_at
        from jsonb_to_recordset(${JSON.stringify([...b.patches.values()])}::text::jsonb) as u(
          id bigint, remaining bigint, filled_abs bigint, status text, cancel_reason text, price_ticks bigint, qty_wh bigint, updated_at timestamptz)
        where o.id = u.id`;
    }
    if (b.inserts.size > 0) {
      await tx`
        insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, stp_mode, price_ticks, qty_wh,
                            filled_wh, status, cancel_reason, expires_at, zone_seq, created_at, updated_at)
        select id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, stp_mode, price_ticks, qty_wh,
               filled_wh, status, cancel_reason, expires_at, zone_seq, created_at, updated_at
        from jsonb_to_recordset(${JSON.stringify([...b.inserts.values()])}::text::jsonb) as r(
          id bigint, zone_id bigint, interval_id bigint, user_id bigint, client_order_id text, side text, order_type text, source text,
          stp_mode text, price_ticks bigint, qty_wh bigint, filled_wh bigint, status text, cancel_reason text, expires_at timestamptz,
          zone_seq bigint, created_at timestamptz, updated_at timestamptz)
        on conflict (id) do nothing`;
    }
    if (b.trades.length > 0) {
      await tx`
        insert into trades (id, zone_id, interval_id, buy_order_id, sell_order_id, buyer_id, seller_id, maker_side, source, price_ticks, qty_wh, zone_seq, executed_at, updated_at)
        select id, zone_id, interval_id, buy_order_id, sell_order_id, buyer_id, seller_id, maker_side, source, price_ticks, qty_wh, zone_seq, executed_at, executed_at
        from jsonb_to_recordset(${JSON.stringify(b.trades)}::text::jsonb) as t(
          id bigint, zone_id bigint, interval_id bigint, buy_order_id bigint, sell_order_id bigint, buyer_id bigint, seller_id bigint,
          maker_side text, source text, price_ticks bigint, qty_wh bigint, zone_seq bigint, executed_at timestamptz)
        on conflict (id) do nothing`;
    }
    const last = Number(rows[rows.length - 1].seq);
    await tx`
      insert into engine_projection_offsets (projection, zone_id, seq) values (${PROJECTION_NAME}, ${zone_id}, ${last})
      on conflict (projection, zone_id) do update set seq = excluded.seq, updated_at = now()`;
    return rows.length;
  }
}

/** Deletes the zones' orders and trades and replays their journals into them. */
export async function rebuildProjections(sql: Sql, zones: number[]): Promise<number> {
  // One statement (all three deletes or none; trades -> orders keys are checked at its end), not
  // sql.begin(): postgres.js 3.4.9 sends a ROLLBACK on a connection that has just dropped, which
  // throws from a timer and takes the process down (porsager/postgres#1208).
  await sql`
    with gone_trades as (delete from trades where zone_id = any(${zones}::bigint[])),
         gone_orders as (delete from orders where zone_id = any(${zones}::bigint[]))
    delete from engine_projection_offsets where projection = ${PROJECTION_NAME} and zone_id = any(${zones}::bigint[])`;
  return projectOnce(sql, zones);
}

/** How long stop() waits for a running projection pass before abandoning it. */
export const PROJECTOR_STOP_WAIT_MS = 3000;

export interface Projector {
  /** Resolves when the read models include every journal row committed before the call (retries until a pass succeeds, or the projector stops). */
  sync(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs a projection pass every poll_ms until stopped, one pass at a time (passes never overlap,
 * which the idempotent writes rely on); failures are logged and retried on the next pass.
 *
 * With `connect`, the projector has a connection of its own, and a batch that has not finished
 * after batch_timeout_ms (a query that never settles on a connection the network silently cut)
 * is abandoned: its connection is dropped, and before the next batch writes anything the old
 * session is ended on the server if it still exists (so a late statement of the abandoned batch
 * cannot land after newer ones). The projector then resumes by itself once the database answers.
 */
export function startProjector(sql: Sql, opts: ProjectorOptions): Projector {
  let stopped = false;
  let chain: Promise<boolean> = Promise.resolve(true);
  let queued = false;
  const batchRows = opts.batch_rows ?? 5000;
  const timeoutMs = opts.batch_timeout_ms ?? 10_000;
  let conn: { sql: Sql; pid: number; started: string } | null = null;
  /** Sessions abandoned mid-batch: ended on the server before the next batch runs. */
  let abandoned: { pid: number; started: string }[] = [];

  const drop = (): void => {
    const c = conn;
    conn = null;
    if (c === null) return;
    if (c.pid > 0) abandoned.push({ pid: c.pid, started: c.started });
    void c.sql.end({ timeout: 0 }).catch(() => {});
  };
  const connection = async (): Promise<Sql> => {
    if (opts.connect === undefined) return sql;
    if (conn !== null) return conn.sql;
    const c = { sql: opts.connect(), pid: 0, started: '' };
    conn = c;
    const [me] = await bounded(
      c.sql<{ pid: number; started: string }[]>`select pid, backend_start::text as started from pg_stat_activity where pid = pg_backend_pid()`,
      timeoutMs,
    );
    c.pid = me.pid;
    c.started = me.started;
    if (abandoned.length > 0) {
      for (const a of abandoned) {
        await bounded(c.sql`select pg_terminate_backend(pid, 2000) from pg_stat_activity where pid = ${a.pid} and backend_start::text = ${a.started}`, timeoutMs);
      }
      abandoned = [];
    }
    return c.sql;
  };
  const runPass = async (): Promise<void> => {
    for (const zone_id of opts.zones) {
      for (;;) {
        if (stopped) return;
        let n: number;
        try {
          const c = await bounded(connection(), timeoutMs);
          n = await bounded(projectBatch(c, zone_id, batchRows), timeoutMs);
        } catch (err) {
          drop();
          throw err;
        }
        if (n < batchRows) break;
      }
    }
  };
  const pass = (): Promise<boolean> => {
    chain = chain.then(() =>
      runPass().then(
        () => true,
        (err: Error) => {
          opts.log?.warn('projection behind the journal (will retry)', { error: err.message });
          return false;
        },
      ),
    );
    return chain;
  };
  const timer = setInterval(() => {
    if (stopped || queued) return;
    queued = true;
    void pass().finally(() => (queued = false));
  }, opts.poll_ms ?? 250);
  timer.unref();
  return {
    sync: async () => {
      for (let attempt = 0; !stopped; attempt++) {
        if (await pass()) return;
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
      }
    },
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      // A pass in flight is waited for a bounded time (each of its batches is bounded anyway).
      let waited: ReturnType<typeof setTimeout> | undefined;
      const done = await Promise.race([
        chain.then(() => true),
        new Promise<boolean>((r) => (waited = setTimeout(() => r(false), PROJECTOR_STOP_WAIT_MS))),
      ]);
      clearTimeout(waited);
      if (!done) opts.log?.warn('projector pass still running at shutdown; abandoned (the projection resumes from its offset)', { waited_ms: PROJECTOR_STOP_WAIT_MS });
      const c = conn;
      conn = null;
      if (c !== null) await c.sql.end({ timeout: 1 }).catch(() => {});
    },
  };
}

const bounded = <T>(p: Promise<T>, ms: number): Promise<T> => withDeadline(p, ms, `projection step took longer than ${ms} ms; its connection is dropped`);
