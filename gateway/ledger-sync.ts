// Keeps the ledger in step with the engine journal across restarts (the money path's recovery).
//
// The ledger effects of committed engine events (a BUY's hold moved to its order id, fills →
// escrow, cancels/expiries → release) are a projection of the journal, applied exactly once per
// (zone, seq), in seq order, by idempotent ledger calls (transfer ids derive from the order id and
// the zone-global trade id). How far each zone has been applied AND made durable is stored in
// engine_projection_offsets under the projection name `ledger_funds`; the offset is written only
// after a ledger flush holding every effect up to it has committed, so it may lag but never leads.
//
// Start-up (before the gateway takes orders):
//   1. subscribe to committed events (buffered), so nothing committed from now on is missed;
//   2. replay each zone's journal after its offset (events committed while no gateway ran: gate
//      closures, halts, operators' mass cancels, or whose ledger flush was lost in a crash);
//   3. apply the buffered events (duplicates are skipped by seq), then apply live events as they come;
//   4. release gateway holds still open (a crash between the hold and the commit: never in the book);
//   5. reconcile with the engine's book (runtime.dump): open holds of orders that are not resting are
//      released; resting BUYs without a hold are reported;
//   6. flush the ledger and store the offsets.
// While running, every `offset_every_ms` the offsets advance (flush, then write).
import type { Sql } from '../schema/db.js';
import type { EngineEvent } from '../engine/index.js';
import { decodeEvents, JOURNAL_KIND_COMMAND } from '../engine/runtime/codec.js';
import type { CommittedEvents, LedgerFunds, TradingBackend } from './backend.js';

export const LEDGER_PROJECTION = 'ledger_funds';
/** Journal rows read per round trip during the replay. */
export const REPLAY_PAGE_ROWS = 5_000;

export interface LedgerSyncOptions {
  sql: Sql;
  backend: TradingBackend;
  funds: LedgerFunds;
  /** LedgerStore.flush (or equivalent). Without it offsets are not stored (nothing is durable). */
  flush?: () => Promise<unknown>;
  /** Replay the journal (a real runtime); false for an in-process core backend that has none. */
  journal: boolean;
  offset_every_ms?: number;
  log?: { info(msg: string, f?: Record<string, unknown>): void; warn(msg: string, f?: Record<string, unknown>): void; error(msg: string, f?: Record<string, unknown>): void };
}

export interface LedgerSync {
  /** What start-up did (tests, logs). */
  readonly startup: { replayed: Record<number, number>; orphans_released: number; stale_released: number; unfunded: number[] };
  /** Flushes the ledger and stores the offsets now. */
  saveOffsets(): Promise<void>;
  stop(): Promise<void>;
}

export async function startLedgerSync(o: LedgerSyncOptions): Promise<LedgerSync> {
  const { sql, backend, funds } = o;
  // 1. From now on nothing committed is lost: buffer until the replay is done.
  let buffer: CommittedEvents[] | null = [];
  const off = backend.subscribeAll((c) => {
    if (buffer !== null) buffer.push(c);
    else funds.apply(c);
  });
  const zones = backend.zones();
  const replayed: Record<number, number> = {};
  // 2. The journal after each zone's stored offset.
  if (o.journal) {
    for (const zone_id of zones) {
      const [row] = await sql<{ seq: string }[]>`
        select seq from engine_projection_offsets where projection = ${LEDGER_PROJECTION} and zone_id = ${zone_id}`;
      let from = row === undefined ? 0 : Number(row.seq);
      funds.startAt(zone_id, from);
      let n = 0;
      for (;;) {
        const rows = await sql<{ seq: string; kind: number; payload: Uint8Array; ts_ms: string }[]>`
          select seq, kind, payload, (extract(epoch from ts) * 1000)::bigint as ts_ms from engine_journal
          where zone_id = ${zone_id} and seq > ${from} order by seq limit ${REPLAY_PAGE_ROWS}`;
        for (const r of rows) {
          if (r.kind !== JOURNAL_KIND_COMMAND) continue;
          const ts_ms = Number(r.ts_ms);
          const events: EngineEvent[] = decodeEvents(r.payload, zone_id, ts_ms);
          if (events.length > 0) funds.replay({ zone_id, seq: Number(r.seq), ts_ms, events });
          n++;
        }
        if (rows.length < REPLAY_PAGE_ROWS) break;
        from = Number(rows[rows.length - 1].seq);
      }
      replayed[zone_id] = n;
    }
  }
  // 3. Buffered events (those already replayed are skipped by seq), then live.
  const buffered = buffer;
  buffer = null;
  for (const c of buffered) funds.apply(c);
  // 4. No order of this gateway is in flight yet: an open gateway hold never reached the book.
  const orphans_released = funds.releaseOrphans();
  // 5. The engine's book is the truth about what rests.
  let stale_released = 0;
  const unfunded: number[] = [];
  for (const zone_id of zones) {
    const { state } = await backend.dump(zone_id);
    const buys = (state.orders as { order_id: number; user_id: number; side: string }[]).filter((x) => x.side === 'BUY');
    const r = funds.reconcile(zone_id, buys);
    stale_released += r.released;
    unfunded.push(...r.unfunded);
  }
  if (orphans_released > 0 || stale_released > 0 || unfunded.length > 0) {
    o.log?.warn('ledger reconciled with the engine', { orphans_released, stale_released, unfunded_resting_buys: unfunded.length });
  }
  // 6. Durable before the first client is served.
  let lastSaved = '';
  const saveOffsets = async (): Promise<void> => {
    if (o.flush === undefined) return;
    const cut = funds.applied();
    const key = JSON.stringify([...cut]);
    if (key === lastSaved) return;
    await o.flush();
    if (cut.size === 0) return;
    const ids = [...cut.keys()];
    const seqs = ids.map((z) => cut.get(z)!);
    await sql`
      insert into engine_projection_offsets (projection, zone_id, seq)
      select ${LEDGER_PROJECTION}, z, s from unnest(${ids}::bigint[], ${seqs}::bigint[]) as r(z, s)
      on conflict (projection, zone_id) do update set seq = greatest(engine_projection_offsets.seq, excluded.seq), updated_at = now()`;
    lastSaved = key;
  };
  await saveOffsets();
  o.log?.info('ledger in step with the journal', { replayed_rows: replayed, orphans_released, stale_released });

  let saving: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (saving !== null) return;
    saving = saveOffsets()
      .catch((err: Error) => o.log?.error('ledger offsets not stored (retried)', { error: err.message }))
      .finally(() => {
        saving = null;
      });
  }, o.offset_every_ms ?? 1000);
  timer.unref();

  return {
    startup: { replayed, orphans_released, stale_released, unfunded },
    saveOffsets,
    async stop() {
      clearInterval(timer);
      off();
      await saving;
      try {
        await saveOffsets();
      } catch (err) {
        o.log?.warn('ledger offsets not stored at shutdown', { error: (err as Error).message });
      }
    },
  };
}
