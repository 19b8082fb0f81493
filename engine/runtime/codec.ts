// Journal row encoding. A journal row is (zone_id, seq, kind, payload, ts); this module owns the
// payload bytes, the PostgreSQL binary COPY tuples the journal writer streams, and a reader for
// binary COPY output (used by recovery, which is the hot path when a zone restarts).
//
// Payload of a COMMAND row (kind 1): [format 2] [command tuple] [varint n] [n event tuples]
// Payload of a CHECKPOINT row (kind 2): [format 2] [string state_hash] — the engine's checkpoint
// hash ("v2:…"; rows written before 2026-12-03 hold its stateHash()) after every row of the zone up
// to and including this one (a checkpoint changes no state).
//
// A tuple is [varint type code + 1] followed by its fields in the order of the lists below
// (0 = the whole object as a msgpack blob, for a shape this version does not know). zone_id and
// ts_ms are not repeated inside: they are columns of the row and are put back on decode.
// A field is one tagged value: 0 null/absent, 1 true, 2 false, 3 zigzag varint (safe integers),
// 4 float64, 5 string (varint length + UTF-8), 6 a well-known string by index (sides, sources,
// order types, reasons …), 7 msgpack blob (nested objects such as a zone config).
// Written straight into the COPY buffer by the worker (no per-row allocation) and read on the
// main thread to hand events to acks and subscribers, so events cross threads as bytes only.
import { Decoder, Encoder } from '@msgpack/msgpack';
import type { Command, EngineEvent } from '../core/types.js';
import { CANCEL_REASONS, EXPIRE_CAUSES, REJECT_CODES } from '../core/types.js';
import {
  COMMAND_TYPES,
  E_ACCEPTED,
  E_AMENDED,
  E_BOOK_LEVEL,
  E_CANCELLED,
  E_EXPIRED,
  E_FILL,
  E_REJECTED,
  EVENT_WIDTH,
  ORDER_TYPES,
  SIDES,
  SOURCES,
  STP_MODES,
} from '../core/codes.js';

export const JOURNAL_KIND_COMMAND = 1;
export const JOURNAL_KIND_CHECKPOINT = 2;

/** Field lists by type; a trailing '?' marks an optional field (nil on the wire = absent). */
const COMMAND_FIELDS = {
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
} as const satisfies { [K in Command['type']]: readonly string[] };
/** Commands whose zone_id is a field of the command (put back from the row on decode). */
const COMMANDS_WITH_ZONE = new Set(['CONFIGURE_ZONE', 'PLACE', 'MASS_CANCEL']);
/** Keys of a command not written in its tuple (they are columns of the row). */
const IMPLICIT_TS: readonly string[] = ['ts_ms'];
const IMPLICIT_WITH_ZONE: readonly string[] = ['ts_ms', 'zone_id'];

const EVENT_FIELDS = {
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
} as const satisfies { [K in EngineEvent['type']]: readonly string[] };

// Compile-time guard: every field of every engine command and event type is in the lists above
// (the encoders below write exactly these fields, so a field the engine adds must be added here,
// at the end of its list, or the build fails).
type Unq<S> = S extends `${infer F}?` ? F : S;
type MissingFields<U extends { type: string }, L extends { [K in U['type']]: readonly string[] }, Implicit extends string> = {
  [K in U['type']]: Exclude<Exclude<keyof Extract<U, { type: K }>, 'type' | Implicit>, Unq<L[K][number]>>;
}[U['type']];
const commandFieldsComplete: [MissingFields<Command, typeof COMMAND_FIELDS, 'ts_ms' | 'zone_id'>] extends [never] ? true : false = true;
const eventFieldsComplete: [MissingFields<EngineEvent, typeof EVENT_FIELDS, 'ts_ms' | 'zone_id'>] extends [never] ? true : false = true;
void commandFieldsComplete;
void eventFieldsComplete;

type Obj = Record<string, unknown>;

interface TypeTable {
  codes: Map<string, number>;
  names: string[];
  fields: { name: string; optional: boolean }[][];
}

function table(lists: Readonly<Record<string, readonly string[]>>): TypeTable {
  const names = Object.keys(lists);
  return {
    names,
    codes: new Map(names.map((n, i) => [n, i])),
    fields: names.map((n) => lists[n].map((f) => ({ name: f.replace('?', ''), optional: f.endsWith('?') }))),
  };
}
const COMMANDS = table(COMMAND_FIELDS);
const EVENTS = table(EVENT_FIELDS);

/** Strings written as one byte. Append only: the index is part of the journal format. */
const WELL_KNOWN: readonly string[] = [
  'BUY', 'SELL', 'ANY', 'SOLAR', 'WIND', 'BATTERY', 'HYDRO',
  'LIMIT', 'MARKET', 'IOC', 'FOK', 'POST_ONLY',
  'CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH',
  'ACTIVE', 'HALTED', 'MAINTENANCE', 'CANCEL_RESTING', 'KEEP_RESTING', 'USER', 'USER_ZONE', 'INTERVAL',
  ...REJECT_CODES, ...CANCEL_REASONS, ...EXPIRE_CAUSES,
  ...Object.keys(COMMAND_FIELDS),
];
const WELL_KNOWN_INDEX = new Map<string, number>();
WELL_KNOWN.forEach((w, i) => {
  if (!WELL_KNOWN_INDEX.has(w)) WELL_KNOWN_INDEX.set(w, i);
});

const FORMAT = 2;
const T_NULL = 0;
const T_TRUE = 1;
const T_FALSE = 2;
const T_INT = 3;
const T_F64 = 4;
const T_STR = 5;
const T_KNOWN = 6;
const T_BLOB = 7;
const ZIGZAG_MAX = 2 ** 52;

const msgEncoder = new Encoder({ ignoreUndefined: true });
const msgDecoder = new Decoder();
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
const fromCharCode = String.fromCharCode;
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;

/**
 * The string of n ASCII bytes at b[s]: one allocation (the string). Short ones (client order ids)
 * by one String.fromCharCode call, longer ones by Buffer's latin1Slice (a native call, cheaper
 * beyond ~10 characters). Appending a character at a time allocated a string per character
 * (~150 B per order on the ack path, measured by heap sampling).
 */
function asciiString(b: Uint8Array, s: number, n: number): string {
  switch (n) {
    case 0: return '';
    case 1: return fromCharCode(b[s]);
    case 2: return fromCharCode(b[s], b[s + 1]);
    case 3: return fromCharCode(b[s], b[s + 1], b[s + 2]);
    case 4: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3]);
    case 5: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4]);
    case 6: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5]);
    case 7: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6]);
    case 8: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7]);
    case 9: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8]);
    case 10: return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9]);
    default: return latin1Slice.call(b, s, s + n);
  }
}

/** A growable byte buffer with the primitives of the payload format. */
export class ByteWriter {
  protected buf: Uint8Array;
  protected view: DataView;
  protected len = 0;

  constructor(initial_bytes = 64 * 1024) {
    this.buf = new Uint8Array(initial_bytes);
    this.view = new DataView(this.buf.buffer);
  }

  get byteLength(): number {
    return this.len;
  }

  protected ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  varint(n: number): void {
    this.ensure(8);
    while (n >= 0x80) {
      this.buf[this.len++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.len++] = n;
  }

  value(v: unknown): void {
    this.ensure(10);
    if (typeof v === 'number' && (v | 0) === v) {
      // Int32 fast path: zigzag and varint in 32-bit integer arithmetic (same bytes as below).
      const buf = this.buf;
      buf[this.len++] = T_INT;
      let z = ((v << 1) ^ (v >> 31)) >>> 0;
      while (z > 0x7f) {
        buf[this.len++] = (z & 0x7f) | 0x80;
        z >>>= 7;
      }
      buf[this.len++] = z;
    } else if (v === null || v === undefined) this.buf[this.len++] = T_NULL;
    else if (typeof v === 'number') {
      if (Number.isSafeInteger(v) && v < ZIGZAG_MAX && v > -ZIGZAG_MAX) {
        this.buf[this.len++] = T_INT;
        this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
      } else {
        this.buf[this.len++] = T_F64;
        this.view.setFloat64(this.len, v);
        this.len += 8;
      }
    } else if (typeof v === 'string') {
      const k = WELL_KNOWN_INDEX.get(v);
      if (k !== undefined) {
        this.buf[this.len++] = T_KNOWN;
        this.buf[this.len++] = k;
      } else {
        this.buf[this.len++] = T_STR;
        this.string(v);
      }
    } else if (typeof v === 'boolean') this.buf[this.len++] = v ? T_TRUE : T_FALSE;
    else this.blob(v);
  }

  /** table[i] as value() writes it, with the well-known index looked up once per table (known[i]). */
  enumValue(table: readonly string[], known: Int16Array, i: number): void {
    const k = i >= 0 && i < known.length ? known[i] : -1;
    if (k >= 0) {
      this.ensure(2);
      this.buf[this.len++] = T_KNOWN;
      this.buf[this.len++] = k;
    } else this.value(table[i]);
  }

  private string(s: string): void {
    let ascii = s.length < 128;
    for (let i = 0; ascii && i < s.length; i++) if (s.charCodeAt(i) > 0x7f) ascii = false;
    if (ascii) {
      this.ensure(1 + s.length);
      this.buf[this.len++] = s.length;
      for (let i = 0; i < s.length; i++) this.buf[this.len++] = s.charCodeAt(i);
      return;
    }
    const b = utf8.encode(s);
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  private blob(v: unknown): void {
    const b = msgEncoder.encode(v);
    this.buf[this.len++] = T_BLOB;
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** Copies bytes[from, to) verbatim. */
  raw(bytes: Uint8Array, from: number, to: number): void {
    this.ensure(to - from);
    if (to - from <= 256) {
      // a command tuple (~60–100 bytes): a loop allocates nothing (subarray made a view object
      // per command, ~90 B per order in the worker, measured by heap sampling)
      const buf = this.buf;
      let o = this.len;
      for (let i = from; i < to; i++) buf[o++] = bytes[i];
    } else this.buf.set(bytes.subarray(from, to), this.len);
    this.len += to - from;
  }

  /** An event tuple, written by the compiled encoder of its type. */
  event(ev: Obj): void {
    const enc = EVENT_ENCODERS[ev.type as string];
    if (enc !== undefined) enc(this, ev);
    else {
      this.varint(0);
      this.blob(ev);
    }
  }

  /**
   * A command tuple. A PLACE that names its zone takes the compiled fast path (order_id given
   * separately, the fields the engine reads, nothing else); any other command goes through the
   * generic writer, which keeps a shape it does not know whole. `item` holds ts_ms.
   */
  commandTuple(item: Obj, order_id: number, zone_id: number): void {
    if (item.type === 'PLACE' && item.zone_id === zone_id) PLACE_ENCODER(this, item, order_id);
    else this.tuple(COMMANDS, item, COMMANDS_WITH_ZONE.has(item.type as string) ? IMPLICIT_WITH_ZONE : IMPLICIT_TS);
  }

  /**
   * A tuple of a known type when `o` has exactly that shape: its implicit keys (put back from the
   * row on decode) present, and no key outside the type's fields. Anything else is kept whole.
   */
  protected tuple(t: TypeTable, o: Obj, implicit: readonly string[]): void {
    const code = t.codes.get(o.type as string);
    if (code !== undefined) {
      const fields = t.fields[code];
      let known = true;
      for (const k of implicit) if (o[k] === undefined) known = false;
      for (const k in o) {
        if (!known) break;
        if (o[k] === undefined || k === 'type' || implicit.includes(k)) continue;
        if (!fields.some((f) => f.name === k)) known = false;
      }
      if (known) {
        this.varint(code + 1);
        for (const f of fields) this.value(o[f.name]);
        return;
      }
    }
    // A shape this version does not know (a field the engine added later): keep all of it.
    this.varint(0);
    this.blob(o);
  }

  /** The payload of a COMMAND row. */
  commandPayload(cmd: Command, events: readonly EngineEvent[]): void {
    this.ensure(1);
    this.buf[this.len++] = FORMAT;
    this.tuple(COMMANDS, cmd as unknown as Obj, COMMANDS_WITH_ZONE.has(cmd.type) ? IMPLICIT_WITH_ZONE : IMPLICIT_TS);
    this.varint(events.length);
    for (let i = 0; i < events.length; i++) this.event(events[i] as unknown as Obj);
  }

  checkpointPayload(state_hash: string): void {
    this.ensure(1);
    this.buf[this.len++] = FORMAT;
    this.value(state_hash);
  }

  /** The bytes written so far (an exact-size copy), and a reset. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.len);
    this.len = 0;
    return out;
  }
}

/** Reads the payload format. */
export class ByteReader {
  private view!: DataView;
  private buf!: Uint8Array;
  o = 0;

  reset(buf: Uint8Array, at = 0): this {
    if (buf !== this.buf) {
      this.buf = buf;
      this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    this.o = at;
    return this;
  }

  float64(): number {
    const v = this.view.getFloat64(this.o);
    this.o += 8;
    return v;
  }

  byte(): number {
    return this.buf[this.o++];
  }

  varint(): number {
    const b0 = this.buf[this.o++];
    if (b0 < 0x80) return b0;
    let n = b0 & 0x7f;
    let mul = 0x80;
    for (;;) {
      const b = this.buf[this.o++];
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 0x80;
    }
  }

  value(): unknown {
    const tag = this.buf[this.o++];
    switch (tag) {
      case T_NULL:
        return null;
      case T_TRUE:
        return true;
      case T_FALSE:
        return false;
      case T_INT: {
        const z = this.varint();
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      case T_F64: {
        const v = this.view.getFloat64(this.o);
        this.o += 8;
        return v;
      }
      case T_STR:
        return this.string();
      case T_KNOWN:
        return WELL_KNOWN[this.buf[this.o++]];
      case T_BLOB: {
        const n = this.varint();
        const v = msgDecoder.decode(this.buf.subarray(this.o, this.o + n));
        this.o += n;
        return v;
      }
      default:
        throw new Error(`bad journal payload: tag ${tag} at ${this.o - 1}`);
    }
  }

  private string(): string {
    const n = this.varint();
    const start = this.o;
    this.o += n;
    let ascii = n < 64;
    for (let i = start; ascii && i < this.o; i++) if (this.buf[i] > 0x7f) ascii = false;
    if (!ascii) return utf8Decoder.decode(this.buf.subarray(start, this.o));
    return asciiString(this.buf, start, n);
  }

  /** A command tuple (zone_id and ts_ms put back from the row). */
  command(zone_id: number, ts_ms: number): Command {
    const code = this.varint() - 1;
    if (code === -1) return this.value() as Command;
    return COMMAND_DECODERS[code](this, zone_id, ts_ms) as unknown as Command;
  }

  /** An event tuple. */
  event(zone_id: number, ts_ms: number): EngineEvent {
    const code = this.varint() - 1;
    if (code === -1) return this.value() as EngineEvent;
    return EVENT_DECODERS[code](this, zone_id, ts_ms) as unknown as EngineEvent;
  }

  /** Skips one tuple. */
  skipTuple(t: TypeTable): void {
    const code = this.varint() - 1;
    if (code === -1) {
      this.value();
      return;
    }
    for (let i = 0; i < t.fields[code].length; i++) this.value();
  }
}

// ---------------------------------------------------------------------------------------------
// Compiled encoders and decoders: one function per type with the field accesses written out, so
// the hot path does no per-field lookups, key counting or object spreading. Generated from the
// field lists above (the single source of the format); field names are plain identifiers.

type TupleEncoder = (w: ByteWriter, o: Obj, order_id?: number) => void;
type TupleDecoder = (r: ByteReader, zone_id: number, ts_ms: number) => Obj;

function compileEncoder(t: TypeTable, code: number, orderIdParam: boolean): TupleEncoder {
  const body = [`w.varint(${code + 1});`];
  for (const f of t.fields[code]) body.push(orderIdParam && f.name === 'order_id' ? 'w.value(order_id);' : `w.value(o.${f.name});`);
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function('w', 'o', 'order_id', body.join('\n')) as TupleEncoder;
}

function compileDecoder(t: TypeTable, code: number, base: 'event' | 'command' | 'command_with_zone'): TupleDecoder {
  const fields = t.fields[code];
  const body: string[] = [];
  fields.forEach((_, i) => body.push(`const f${i} = r.value();`));
  const props = [`type: ${JSON.stringify(t.names[code])}`];
  if (base === 'event') props.push('zone_id', 'ts_ms');
  else if (base === 'command_with_zone') props.push('ts_ms', 'zone_id');
  else props.push('ts_ms');
  fields.forEach((f, i) => {
    if (!f.optional) props.push(`${f.name}: f${i}`);
  });
  const optional = fields.map((f, i) => ({ ...f, i })).filter((f) => f.optional);
  if (optional.length <= 3) {
    // One object literal per combination of the optional fields present (at most 8): the object
    // is allocated at its final size with every field in-object. Adding an optional field after
    // the literal (the previous way) allocated an out-of-object property store per object (a PLACE
    // with stp: ~210 B per order in the worker). Same keys in the same order either way.
    for (let mask = (1 << optional.length) - 1; mask >= 0; mask--) {
      const present = optional.filter((_, k) => (mask & (1 << k)) !== 0);
      const cond = optional.map((f, k) => `f${f.i} ${(mask & (1 << k)) !== 0 ? '!==' : '==='} null`).join(' && ');
      const lit = `{ ${[...props, ...present.map((f) => `${f.name}: f${f.i}`)].join(', ')} }`;
      body.push(cond === '' ? `return ${lit};` : `if (${cond}) return ${lit};`);
    }
  } else {
    body.push(`const o = { ${props.join(', ')} };`);
    fields.forEach((f, i) => {
      if (f.optional) body.push(`if (f${i} !== null) o.${f.name} = f${i};`);
    });
    body.push('return o;');
  }
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function('r', 'zone_id', 'ts_ms', body.join('\n')) as TupleDecoder;
}

const EVENT_ENCODERS: Record<string, TupleEncoder> = Object.create(null) as Record<string, TupleEncoder>;
EVENTS.names.forEach((n, code) => (EVENT_ENCODERS[n] = compileEncoder(EVENTS, code, false)));
const PLACE_ENCODER = compileEncoder(COMMANDS, COMMANDS.codes.get('PLACE')!, true);
const EVENT_DECODERS: TupleDecoder[] = EVENTS.names.map((_, code) => compileDecoder(EVENTS, code, 'event'));
const COMMAND_DECODERS: TupleDecoder[] = COMMANDS.names.map((n, code) => compileDecoder(COMMANDS, code, COMMANDS_WITH_ZONE.has(n) ? 'command_with_zone' : 'command'));

/** What appendEngineCommand reads from a zone engine (engine/core/engine.ts; layout in core/events.ts). */
export interface EngineEventSource {
  readonly eventCount: number;
  /** EVENT_WIDTH float64 cells per event, valid until the engine's next command. */
  eventBuffer(): Float64Array;
  /** The client order id of event i (for the types that carry one). */
  eventString(i: number): string | undefined;
  event(i: number): EngineEvent;
}

// Encoders from the engine's event cells, for the frequent event types. CELLS says where
// decodeEvent (core/events.ts) reads each field: a cell, an enum table indexed by a cell, the
// event's client order id, or a 0/1 cell read as a boolean. Each encoder is compiled from it in
// EVENT_FIELDS order (the wire order), writing every field as value() would write what decodeEvent
// makes of those cells; the other types go through decodeEvent and the object encoder.
// test/runtime/codec.test.ts checks byte equality over random engine runs of every event type.
type CellEncoder = (w: ByteWriter, ev: Float64Array, f: number, s: string | undefined) => void;
type CellSpec = number | 'client_order_id' | { cell: number; names: readonly string[] } | { flag: number };
const orderCells = { event_seq: 1, order_id: 3, user_id: 4, client_order_id: 'client_order_id', interval_id: 2 } as const;
const CELLS: [code: number, type: EngineEvent['type'], fields: Record<string, CellSpec>][] = [
  [E_ACCEPTED, 'ACCEPTED', {
    ...orderCells, side: { cell: 5, names: SIDES }, source: { cell: 6, names: SOURCES }, order_type: { cell: 7, names: ORDER_TYPES },
    stp: { cell: 8, names: STP_MODES }, price_ticks: 9, qty_wh: 10, seq: 11, expire_at_ms: 12,
  }],
  [E_REJECTED, 'REJECTED', { ...orderCells, command: { cell: 6, names: COMMAND_TYPES }, reason: { cell: 5, names: REJECT_CODES } }],
  [E_FILL, 'FILL', {
    event_seq: 1, trade_id: 3, interval_id: 2, maker_order_id: 4, maker_user_id: 5, taker_order_id: 6, taker_user_id: 7,
    taker_side: { cell: 11, names: SIDES }, price_ticks: 8, qty_wh: 9, source: { cell: 10, names: SOURCES }, maker_remaining_wh: 12, taker_remaining_wh: 13,
  }],
  [E_CANCELLED, 'CANCELLED', { ...orderCells, reason: { cell: 5, names: CANCEL_REASONS }, qty_wh: 6, filled_wh: 7 }],
  [E_EXPIRED, 'EXPIRED', { ...orderCells, cause: { cell: 5, names: EXPIRE_CAUSES }, qty_wh: 6, filled_wh: 7 }],
  [E_AMENDED, 'AMENDED', { ...orderCells, price_ticks: 5, qty_wh: 6, remaining_wh: 7, filled_wh: 10, seq: 8, priority_kept: { flag: 9 } }],
  [E_BOOK_LEVEL, 'BOOK_LEVEL', {
    event_seq: 1, interval_id: 2, side: { cell: 3, names: SIDES }, source: { cell: 4, names: SOURCES }, price_ticks: 5, qty_wh: 6, source_qty_wh: 7, source_order_count: 8,
  }],
];

function compileCellEncoder(type: string, cells: Record<string, CellSpec>): CellEncoder {
  const code = EVENTS.codes.get(type)!;
  const fields = EVENTS.fields[code];
  if (fields.length !== Object.keys(cells).length) throw new Error(`codec: the cell table of ${type} does not name exactly its ${fields.length} fields`);
  const tables: (readonly string[])[] = [];
  const known: Int16Array[] = [];
  const body = [`w.varint(${code + 1});`];
  for (const { name } of fields) {
    const c = cells[name];
    if (c === undefined) throw new Error(`codec: the cell table of ${type} has no ${name}`);
    if (typeof c === 'number') body.push(`w.value(ev[f + ${c}]);`);
    else if (c === 'client_order_id') body.push("w.value(s ?? '');");
    else if ('flag' in c) body.push(`w.value(ev[f + ${c.flag}] === 1);`);
    else {
      body.push(`w.enumValue(tables[${tables.length}], known[${tables.length}], ev[f + ${c.cell}]);`);
      tables.push(c.names);
      known.push(Int16Array.from(c.names, (n) => WELL_KNOWN_INDEX.get(n) ?? -1));
    }
  }
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated from the tables above, never from input
  return new Function('tables', 'known', `return function (w, ev, f, s) {\n${body.join('\n')}\n};`)(tables, known) as CellEncoder;
}

const CELL_ENCODERS: (CellEncoder | undefined)[] = [];
for (const [code, type, cells] of CELLS) CELL_ENCODERS[code] = compileCellEncoder(type, cells);

// One reader per thread, reset per payload (decoding is synchronous).
const sharedReader = new ByteReader();

function reader(payload: Uint8Array): ByteReader {
  if (payload[0] !== FORMAT) throw new Error(`journal payload format ${payload[0]} is not supported (expected ${FORMAT})`);
  return sharedReader.reset(payload, 1);
}

/** Decodes only the command of a COMMAND payload (recovery). */
export function decodeCommand(payload: Uint8Array, zone_id: number, ts_ms: number): Command {
  return reader(payload).command(zone_id, ts_ms);
}

/** Decodes the events of a COMMAND payload. */
export function decodeEvents(payload: Uint8Array, zone_id: number, ts_ms: number): EngineEvent[] {
  const r = reader(payload);
  r.skipTuple(COMMANDS);
  return readEvents(r, zone_id, ts_ms);
}

/**
 * Decodes the events of a COMMAND payload from `at`, the offset of its event count (the worker
 * reports it per row, so the main thread neither copies the payload nor reads the command).
 */
export function decodeEventsAt(bytes: Uint8Array, at: number, zone_id: number, ts_ms: number): EngineEvent[] {
  return readEvents(sharedReader.reset(bytes, at), zone_id, ts_ms);
}

function readEvents(r: ByteReader, zone_id: number, ts_ms: number): EngineEvent[] {
  const n = r.varint();
  const out: EngineEvent[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = r.event(zone_id, ts_ms);
  return out;
}

export function encodeCommandPayload(cmd: Command, events: readonly EngineEvent[]): Uint8Array {
  const w = new ByteWriter(256);
  w.commandPayload(cmd, events);
  return w.take();
}

export function encodeCheckpointPayload(state_hash: string): Uint8Array {
  const w = new ByteWriter(64);
  w.checkpointPayload(state_hash);
  return w.take();
}

export function decodeCheckpointPayload(payload: Uint8Array): string {
  return reader(payload).value() as string;
}

/**
 * A binary COPY of one engine_snapshots row (zone_id, seq, state, state_hash), as the chunks to
 * write: the state is not copied (a snapshot of a deep book is tens of MB; a bytea parameter
 * would go as hex text, twice its size, built on the main thread).
 */
export function snapshotCopyChunks(zone_id: number, seq: number, state: Uint8Array, state_hash: string): Uint8Array[] {
  const head = new Uint8Array(COPY_HEADER.length + 30);
  head.set(COPY_HEADER, 0);
  const v = new DataView(head.buffer);
  const o = tupleKey(v, COPY_HEADER.length, 4, zone_id, seq);
  v.setInt32(o, state.length);
  const hash = new TextEncoder().encode(state_hash);
  const tail = new Uint8Array(4 + hash.length + COPY_TRAILER.length);
  new DataView(tail.buffer).setInt32(0, hash.length);
  tail.set(hash, 4);
  tail.set(COPY_TRAILER, 4 + hash.length);
  return [head, state, tail];
}

/** A binary COPY tuple's field count, then (zone_id, seq) as its two int8 fields; returns the offset after them. */
function tupleKey(v: DataView, o: number, fields: number, zone_id: number, seq: number): number {
  v.setInt16(o, fields);
  v.setInt32(o + 2, 8);
  setInt64(v, o + 6, zone_id);
  v.setInt32(o + 14, 8);
  setInt64(v, o + 18, seq);
  return o + 26;
}

/** Snapshots written before 2026-12-03 are msgpack of the engine's serialize() output (now: engine/core/snapshot.ts). */
export function encodeState(state: unknown): Uint8Array {
  return msgEncoder.encode(state);
}

export function decodeState<T>(bytes: Uint8Array): T {
  return msgDecoder.decode(bytes) as T;
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
 * buffer by doubling. Command payloads are encoded in place. `take()` hands the bytes over (for a
 * transfer to another thread).
 */
export class CopyTupleWriter extends ByteWriter {
  rows = 0;
  private payloadAt = 0;

  append(zone_id: number, seq: number, kind: number, payload: Uint8Array, ts_ms: number): void {
    this.begin(zone_id, seq, kind);
    this.ensure(payload.length);
    this.buf.set(payload, this.len);
    this.len += payload.length;
    this.end(ts_ms);
  }

  /** Writes a COMMAND row; returns the payload's offset (its length is byteLength - offset - 12). */
  appendCommand(zone_id: number, seq: number, cmd: Command, events: readonly EngineEvent[]): number {
    this.begin(zone_id, seq, JOURNAL_KIND_COMMAND);
    const at = this.payloadAt;
    this.commandPayload(cmd, events);
    this.end(cmd.ts_ms);
    return at;
  }

  /** A COMMAND row's start: format byte, the encoded command tuple, the event count. Returns the payload's offset. */
  private beginEncodedCommand(zone_id: number, seq: number, bytes: Uint8Array, from: number, to: number, eventCount: number): number {
    this.begin(zone_id, seq, JOURNAL_KIND_COMMAND);
    const at = this.payloadAt;
    this.ensure(1);
    this.buf[this.len++] = FORMAT;
    this.raw(bytes, from, to);
    this.eventsAt = this.len;
    this.varint(eventCount);
    return at;
  }

  /**
   * Writes a COMMAND row whose command tuple is already encoded (bytes[from, to), as the
   * sequencer wrote it) followed by the events. Sets `eventsAt` to the offset of the event count.
   * Returns the payload's offset (its length is byteLength - offset - 12).
   */
  appendEncodedCommand(zone_id: number, seq: number, ts_ms: number, bytes: Uint8Array, from: number, to: number, events: readonly EngineEvent[]): number {
    const at = this.beginEncodedCommand(zone_id, seq, bytes, from, to, events.length);
    for (let i = 0; i < events.length; i++) this.event(events[i] as unknown as Obj);
    this.end(ts_ms);
    return at;
  }

  /**
   * appendEncodedCommand with the events read straight from the engine's event buffer: the same
   * bytes, without decoding every event to an object first (the zone worker's hot path: per
   * order, the objects and the enum-name lookups were a quarter of the worker's time). Events
   * [firstEvent, endEvent) of the buffer: after executeBatch, one command's share of it.
   */
  appendEngineCommand(
    zone_id: number,
    seq: number,
    ts_ms: number,
    bytes: Uint8Array,
    from: number,
    to: number,
    events: EngineEventSource,
    firstEvent = 0,
    endEvent = events.eventCount,
  ): number {
    const at = this.beginEncodedCommand(zone_id, seq, bytes, from, to, endEvent - firstEvent);
    const ev = events.eventBuffer();
    for (let i = firstEvent; i < endEvent; i++) {
      const f = i * EVENT_WIDTH;
      const enc = CELL_ENCODERS[ev[f]];
      if (enc !== undefined) enc(this, ev, f, events.eventString(i));
      else this.event(events.event(i) as unknown as Obj);
    }
    this.end(ts_ms);
    return at;
  }

  /** Offset of the event count of the last row written by appendEncodedCommand. */
  eventsAt = 0;

  /** Writes a CHECKPOINT row. */
  appendCheckpoint(zone_id: number, seq: number, state_hash: string, ts_ms: number): void {
    this.begin(zone_id, seq, JOURNAL_KIND_CHECKPOINT);
    this.checkpointPayload(state_hash);
    this.end(ts_ms);
  }

  private begin(zone_id: number, seq: number, kind: number): void {
    this.ensure(36);
    const v = this.view;
    const o = tupleKey(v, this.len, 5, zone_id, seq);
    v.setInt32(o, 2);
    v.setInt16(o + 4, kind);
    this.len = o + 10;
    this.payloadAt = this.len;
  }

  private end(ts_ms: number): void {
    this.view.setInt32(this.payloadAt - 4, this.len - this.payloadAt);
    this.ensure(12);
    this.view.setInt32(this.len, 8);
    setInt64(this.view, this.len + 4, (ts_ms - PG_EPOCH_MS) * 1000);
    this.len += 12;
    this.rows++;
  }

  override take(): Uint8Array {
    this.rows = 0;
    return super.take();
  }
}

/**
 * The sequencer's batch of commands for one worker, sent as one transferred buffer. Per row:
 * [varint zone_id][varint seq][float64 ts_ms][byte kind] and, for a COMMAND, its command tuple in
 * the journal format (the worker decodes it for the engine and copies the bytes into the journal
 * row as they are, so a command is encoded once).
 */
export class CommandBatchWriter extends ByteWriter {
  rows = 0;

  command(zone_id: number, seq: number, ts_ms: number, item: Obj, order_id: number): void {
    this.head(zone_id, seq, ts_ms, JOURNAL_KIND_COMMAND);
    this.commandTuple(item, order_id, zone_id);
  }

  checkpoint(zone_id: number, seq: number, ts_ms: number): void {
    this.head(zone_id, seq, ts_ms, JOURNAL_KIND_CHECKPOINT);
  }

  private head(zone_id: number, seq: number, ts_ms: number, kind: number): void {
    this.varint(zone_id);
    this.varint(seq);
    this.ensure(9);
    this.view.setFloat64(this.len, ts_ms);
    this.len += 8;
    this.buf[this.len++] = kind;
    this.rows++;
  }

  override take(): Uint8Array {
    this.rows = 0;
    return super.take();
  }
}

/** Reads a big-endian int64 that holds a safe integer, without BigInt. */
function getInt64(v: DataView, o: number): number {
  return v.getInt32(o) * 4294967296 + v.getUint32(o + 4);
}

/** Big-endian int64 of a safe integer without BigInt. */
function setInt64(v: DataView, o: number, n: number): void {
  const hi = Math.floor(n / 4294967296);
  v.setInt32(o, hi);
  v.setUint32(o + 4, n - hi * 4294967296);
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
        zone_id: getInt64(v, o + 6),
        seq: getInt64(v, o + 18),
        kind: v.getInt16(o + 30),
        payload: buf.subarray(o + 36, o + 36 + plen),
        ts_ms: Math.floor(getInt64(v, o + 40 + plen) / 1000) + PG_EPOCH_MS,
      });
      o = end;
    }
    if (o < buf.length) this.pending = buf.slice(o);
  }
}
