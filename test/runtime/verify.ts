// Checks shared by the runtime's durability tests.
import { expect } from 'vitest';
import type { Sql } from '../../schema/db.js';
import type { EngineEvent, EngineSnapshot, OrderType } from '../../engine/core/types.js';
import { decodeEvents, JOURNAL_KIND_COMMAND } from '../../engine/runtime/codec.js';
import { canonicalJson } from '../../engine/runtime/recovery.js';
import type { SubmitAck, SubmitCommand } from '../../engine/runtime/types.js';
import type { Market } from './fixtures.js';

export interface JournalView {
  /** seq → events of that command (checkpoint rows map to null). */
  rows: Map<number, EngineEvent[] | null>;
  max_seq: number;
}

export async function readJournal(sql: Sql, zone_id: number): Promise<JournalView> {
  const rows = await sql<{ seq: string; kind: number; payload: Uint8Array; ts_ms: string }[]>`
    select seq, kind, payload, (extract(epoch from ts) * 1000)::bigint as ts_ms from engine_journal where zone_id = ${zone_id} order by seq`;
  const out = new Map<number, EngineEvent[] | null>();
  let expected = 1;
  for (const r of rows) {
    const seq = Number(r.seq);
    // The journal of a zone is gap-free: every sequence number handed out and journaled once.
    expect(seq).toBe(expected++);
    out.set(seq, r.kind === JOURNAL_KIND_COMMAND ? decodeEvents(r.payload, zone_id, Number(r.ts_ms)) : null);
  }
  return { rows: out, max_seq: rows.length };
}

/** Every acknowledged command is in the journal at its seq with exactly the acknowledged events. */
export function expectAckedInJournal(journals: Map<number, JournalView>, acked: SubmitAck[]): void {
  for (const a of acked) {
    const j = journals.get(a.zone_id);
    const events = j?.rows.get(a.seq);
    expect(events, `acked zone ${a.zone_id} seq ${a.seq} missing from the journal`).toBeTruthy();
    expect(canonicalJson(events)).toBe(canonicalJson(a.events));
  }
}

/** Every order the journal leaves open (accepted, never finished) is in the rebuilt book with its remaining quantity, and nothing else is. */
export function expectBooksMatchJournal(journal: JournalView, state: EngineSnapshot): void {
  const open = new Map<number, number>();
  for (const events of journal.rows.values()) {
    for (const ev of events ?? []) {
      if (ev.type === 'ACCEPTED') open.set(ev.order_id, ev.qty_wh);
      else if (ev.type === 'FILL') {
        setOrDrop(open, ev.maker_order_id, ev.maker_remaining_wh);
        setOrDrop(open, ev.taker_order_id, ev.taker_remaining_wh);
      } else if (ev.type === 'CANCELLED' || ev.type === 'EXPIRED') open.delete(ev.order_id);
      else if (ev.type === 'AMENDED') setOrDrop(open, ev.order_id, ev.remaining_wh);
    }
  }
  const inBook = new Map(state.orders.map((o) => [o.order_id, o.remaining_wh]));
  expect(inBook).toEqual(open);
}

function setOrDrop(m: Map<number, number>, id: number, remaining: number): void {
  if (!m.has(id)) return;
  if (remaining === 0) m.delete(id);
  else m.set(id, remaining);
}

/** A random but valid-looking order flow: limits, takers, FOK, post-only, cancels and amends. */
export function orderFlow(m: Market, random: () => number) {
  const live: { zone_id: number; order_id: number; user_id: number }[] = [];
  let n = 0;
  const types: OrderType[] = ['LIMIT', 'LIMIT', 'LIMIT', 'LIMIT', 'LIMIT', 'LIMIT', 'IOC', 'MARKET', 'FOK', 'POST_ONLY'];
  return {
    next(): { zone_id: number; cmd: SubmitCommand } {
      const r = random();
      if (r < 0.12 && live.length > 0) {
        const o = live.splice(Math.floor(random() * live.length), 1)[0];
        return { zone_id: o.zone_id, cmd: { type: 'CANCEL', order_id: o.order_id, user_id: o.user_id } };
      }
      if (r < 0.18 && live.length > 0) {
        const o = live[Math.floor(random() * live.length)];
        return { zone_id: o.zone_id, cmd: { type: 'AMEND', order_id: o.order_id, user_id: o.user_id, qty_wh: 10 * (1 + Math.floor(random() * 20)) } };
      }
      const zi = Math.floor(random() * m.zone_ids.length);
      const zone_id = m.zone_ids[zi];
      const buy = random() < 0.5;
      const sources = ['SOLAR', 'WIND'] as const;
      return {
        zone_id,
        cmd: {
          type: 'PLACE',
          user_id: m.user_ids[Math.floor(random() * m.user_ids.length)],
          client_order_id: `o${n++}-${Math.floor(random() * 1e9)}`,
          zone_id,
          interval_id: m.interval_ids[zi],
          side: buy ? 'BUY' : 'SELL',
          source: buy ? (random() < 0.7 ? 'ANY' : sources[Math.floor(random() * 2)]) : sources[Math.floor(random() * 2)],
          order_type: types[Math.floor(random() * types.length)],
          price_ticks: 1000 + (buy ? 1 : -1) * (Math.floor(random() * 30) - 22),
          qty_wh: 10 * (1 + Math.floor(random() * 20)),
          stp: (['CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'] as const)[Math.floor(random() * 3)],
        },
      };
    },
    /** Remember an accepted resting order so later commands can cancel or amend it. */
    observe(ack: SubmitAck): void {
      for (const ev of ack.events) {
        if (ev.type === 'ACCEPTED' && (ev.order_type === 'LIMIT' || ev.order_type === 'POST_ONLY')) {
          live.push({ zone_id: ack.zone_id, order_id: ev.order_id, user_id: ev.user_id });
        }
      }
      if (live.length > 400) live.splice(0, live.length - 400);
    },
  };
}
