// Journal row encoding. A journal row is (zone_id, seq, kind, payload, ts); this module owns the
// payload bytes, the PostgreSQL binary COPY tuples the journal writer streams, and a reader for
// binary COPY output (used by recovery, which is the hot path when a zone restarts).
//
// Payload of a COMMAND row (kind 1):  u32 BE length of A | A | B
//   A = msgpack(command tuple), B = msgpack(array of event tuples)
// so recovery decodes only A (the command) and skips the events.
// Payload of a CHECKPOINT row (kind 2): msgpack([state_hash]) — the engine's state hash after every
// row of the zone up to and including this one (a checkpoint does not change engine state).
//
// Tuples are positional: [type_code, field1, field2, …] using the field lists below, which keeps a
// row about a third of the size of msgpack maps. zone_id and ts_ms are not repeated in the tuples:
// they are columns of the row and are put back on decode. An object whose keys differ from its
// list (a field the engine added later) is written as [-1, whole object] so nothing is lost.
import { Decoder, Encoder } from '@msgpack/msgpack';
import type { Command, EngineEvent } from '../core/types.js';

export const JOURNAL_KIND_COMMAND = 1;
export const JOURNAL_KIND_CHECKPOINT = 2;

/** Field lists by type; a trailing '?' marks an optional field (nil on the wire = absent). */
const COMMAND_FIELDS: Record<string, readonly string[]> = {
  CONFIGURE_ZONE: ['price_step_ticks', 'lot_wh', 'band_min_ticks', 'band_max_ticks', 'min_qty_wh', 'max_qty_wh', 'max_open_orders_per_user', 'status?'],
  OPEN_INTERVAL: ['interval_id', 'capacity_wh'],
  GATE_CLOSE: ['interval_id'],
  HALT: ['policy'],
  MAINTENANCE: ['policy?'],
  RESUME: [],
  SET_SELLER_LIMIT: ['user_id', 'interval_id', 'limit_wh'],
  PLACE: ['order_id', 'user_id', 'client_order_id', 'interval_id', 'side', 'source', 'order_type', 'price_ticks', 'qty_wh', 'stp?', 'expire_at_ms?'],
  CANCEL: ['order_id', 'user_id'],
  AMEND: ['order_id', 'user_id', 'price_ticks?', 'qty_wh?'],
  MASS_CANCEL: ['scope', 'user_id?', 'interval_id?'],
  EXPIRE_DUE: [],
};
/** Commands whose zone_id is a field of the command (put back from the row on decode). */
const COMMANDS_WITH_ZONE = new Set(['CONFIGURE_ZONE', 'PLACE', 'MASS_CANCEL']);

const EVENT_FIELDS: Record<string, readonly string[]> = {
  ACCEPTED: ['event_seq', 'order_id', 'user_id', 'client_order_id', 'interval_id', 'side', 'source', 'order_type', 'stp', 'price_ticks', 'qty_wh', 'seq', 'expire_at_ms'],
  REJECTED: ['event_seq', 'command', 'reason', 'order_id', 'user_id', 'client_order_id', 'interval_id'],
  FILL: ['event_seq', 'trade_id', 'interval_id', 'maker_order_id', 'maker_user_id', 'taker_order_id', 'taker_user_id', 'taker_side', 'price_ticks', 'qty_wh', 'source', 'maker_remaining_wh', 'taker_remaining_wh'],
  CANCELLED: ['event_seq', 'order_id', 'user_id', 'client_order_id', 'interval_id', 'reason', 'qty_wh', 'filled_wh'],
  EXPIRED: ['event_seq', 'order_id', 'user_id', 'client_order_id', 'interval_id', 'cause', 'qty_wh', 'filled_wh'],
  AMENDED: ['event_seq', 'order_id', 'user_id', 'client_order_id', 'interval_id', 'price_ticks', 'qty_wh', 'remaining_wh', 'filled_wh', 'seq', 'priority_kept'],
  BOOK_LEVEL: ['event_seq', 'interval_id', 'side', 'source', 'price_ticks', 'qty_wh', 'source_qty_wh', 'source_order_count'],
  ZONE_STATUS: ['event_seq', 'status', 'policy'],
  ZONE_CONFIGURED: ['event_seq', 'config'],
  INTERVAL_OPENED: ['event_seq', 'interval_id', 'capacity_wh'],
  GATE_CLOSED: ['event_seq', 'interval_id', 'expired_count'],
  SELLER_LIMIT_SET: ['event_seq', 'interval_id', 'user_id', 'limit_wh'],
};

interface TypeTable {
  codes: Map<string, number>;
  names: string[];
  fields: { name: string; optional: boolean }[][];
}

function table(lists: Record<string, readonly string[]>): TypeTable {
  const names = Object.keys(lists);
  return {
    names,
    codes: new Map(names.map((n, i) => [n, i])),
    fields: names.map((n) => lists[n].map((f) => ({ name: f.replace('?', ''), optional: f.endsWith('?') }))),
  };
}
const COMMANDS = table(COMMAND_FIELDS);
const EVENTS = table(EVENT_FIELDS);

type Obj = Record<string, unknown>;

function toTuple(t: TypeTable, o: Obj, implicit: number): unknown[] {
  const code = t.codes.get(o.type as string);
  if (code === undefined) return [-1, o];
  const fields = t.fields[code];
  const out: unknown[] = [code];
  let present = implicit;
  for (const f of fields) {
    const v = o[f.name];
    if (v !== undefined) present++;
    out.push(v === undefined ? null : v);
  }
  let keys = 0;
  for (const k in o) if (o[k] !== undefined) keys++;
  // 'type' is implicit in the code; anything else unexpected → keep the whole object.
  return keys === present + 1 ? out : [-1, o];
}

function fromTuple(t: TypeTable, a: unknown[], base: Obj): Obj {
  const code = a[0] as number;
  if (code === -1) return a[1] as Obj;
  const o: Obj = { type: t.names[code], ...base };
  const fields = t.fields[code];
  for (let i = 0; i < fields.length; i++) {
    const v = a[i + 1];
    if (v === null && fields[i].optional) continue;
    o[fields[i].name] = v;
  }
  return o;
}

// One encoder/decoder per thread; both are reentrant for our use (no async).
const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

export function encodeCommandPayload(cmd: Command, events: readonly EngineEvent[]): Uint8Array {
  const c = cmd as unknown as Obj;
  // zone_id and ts_ms live in the row; zone_id is implicit only for commands that carry it.
  const a = encoder.encode(toTuple(COMMANDS, c, (COMMANDS_WITH_ZONE.has(cmd.type) ? 1 : 0) + 1));
  const evs: unknown[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) evs[i] = toTuple(EVENTS, events[i] as unknown as Obj, 2);
  const b = encoder.encode(evs);
  const out = new Uint8Array(4 + a.length + b.length);
  new DataView(out.buffer).setUint32(0, a.length);
  out.set(a, 4);
  out.set(b, 4 + a.length);
  return out;
}

function commandBase(type: string, zone_id: number, ts_ms: number): Obj {
  return COMMANDS_WITH_ZONE.has(type) ? { ts_ms, zone_id } : { ts_ms };
}

/** Decodes only the command of a COMMAND payload. */
export function decodeCommand(payload: Uint8Array, zone_id: number, ts_ms: number): Command {
  const len = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
  const a = decoder.decode(payload.subarray(4, 4 + len)) as unknown[];
  const type = COMMANDS.names[a[0] as number];
  return fromTuple(COMMANDS, a, a[0] === -1 ? {} : commandBase(type, zone_id, ts_ms)) as unknown as Command;
}

/** Decodes the events of a COMMAND payload. */
export function decodeEvents(payload: Uint8Array, zone_id: number, ts_ms: number): EngineEvent[] {
  const len = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
  const b = decoder.decode(payload.subarray(4 + len)) as unknown[][];
  const base = { zone_id, ts_ms };
  return b.map((t) => fromTuple(EVENTS, t, base) as unknown as EngineEvent);
}

export function encodeCheckpointPayload(state_hash: string): Uint8Array {
  return encoder.encode([state_hash]);
}

export function decodeCheckpointPayload(payload: Uint8Array): string {
  return (decoder.decode(payload) as [string])[0];
}

export function encodeState(state: unknown): Uint8Array {
  return encoder.encode(state);
}

export function decodeState<T>(bytes: Uint8Array): T {
  return decoder.decode(bytes) as T;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL binary COPY (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format").

/** Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
const PG_EPOCH_MS = 946_684_800_000;
export const COPY_HEADER = Uint8Array.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
export const COPY_TRAILER = Uint8Array.from([0xff, 0xff]);
/** Bytes of one journal tuple besides its payload. */
const TUPLE_OVERHEAD = 2 + 12 + 12 + 6 + 4 + 12;

/**
 * Appends binary COPY tuples for engine_journal (zone_id, seq, kind, payload, ts), growing its
 * buffer by doubling. `take()` hands the bytes over (for a transfer to another thread).
 */
export class CopyTupleWriter {
  private buf: Uint8Array;
  private view: DataView;
  private len = 0;
  rows = 0;

  constructor(initial_bytes = 64 * 1024) {
    this.buf = new Uint8Array(initial_bytes);
    this.view = new DataView(this.buf.buffer);
  }

  append(zone_id: number, seq: number, kind: number, payload: Uint8Array, ts_ms: number): void {
    this.ensure(TUPLE_OVERHEAD + payload.length);
    const v = this.view;
    let o = this.len;
    v.setInt16(o, 5);
    v.setInt32(o + 2, 8);
    v.setBigInt64(o + 6, BigInt(zone_id));
    v.setInt32(o + 14, 8);
    v.setBigInt64(o + 18, BigInt(seq));
    v.setInt32(o + 26, 2);
    v.setInt16(o + 30, kind);
    v.setInt32(o + 32, payload.length);
    o += 36;
    this.buf.set(payload, o);
    o += payload.length;
    v.setInt32(o, 8);
    v.setBigInt64(o + 4, BigInt(ts_ms - PG_EPOCH_MS) * 1000n);
    this.len = o + 12;
    this.rows++;
  }

  get byteLength(): number {
    return this.len;
  }

  /** The tuples written so far (a copy sized exactly), and a reset. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.len);
    this.len = 0;
    this.rows = 0;
    return out;
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
}

export interface JournalRow {
  zone_id: number;
  seq: number;
  kind: number;
  payload: Uint8Array;
  ts_ms: number;
}

/**
 * Incremental parser of `COPY (select zone_id, seq, kind, payload, ts …) TO STDOUT (FORMAT binary)`.
 * Feed it chunks; it calls `onRow` for every complete tuple. Payloads are views into the chunk.
 */
export class CopyJournalReader {
  private pending: Uint8Array | null = null;
  private headerDone = false;
  ended = false;

  constructor(private readonly onRow: (row: JournalRow) => void) {}

  push(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.pending !== null) {
      const joined = new Uint8Array(this.pending.length + chunk.length);
      joined.set(this.pending);
      joined.set(chunk, this.pending.length);
      buf = joined;
      this.pending = null;
    }
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let o = 0;
    if (!this.headerDone) {
      if (buf.length < 19) {
        this.pending = buf;
        return;
      }
      o = 19 + v.getInt32(15);
      this.headerDone = true;
    }
    for (;;) {
      if (o + 2 > buf.length) break;
      const nf = v.getInt16(o);
      if (nf === -1) {
        this.ended = true;
        return;
      }
      if (o + 36 > buf.length) break;
      const plen = v.getInt32(o + 32);
      const end = o + 36 + plen + 12;
      if (end > buf.length) break;
      this.onRow({
        zone_id: Number(v.getBigInt64(o + 6)),
        seq: Number(v.getBigInt64(o + 18)),
        kind: v.getInt16(o + 30),
        payload: buf.subarray(o + 36, o + 36 + plen),
        ts_ms: Number(v.getBigInt64(o + 40 + plen) / 1000n) + PG_EPOCH_MS,
      });
      o = end;
    }
    if (o < buf.length) this.pending = buf.slice(o);
  }
}
