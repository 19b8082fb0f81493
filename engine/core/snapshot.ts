// The engine's checkpoint forms: a binary snapshot and a checkpoint hash, both of the same
// canonical state as serialize() (config, counters, intervals, sellers, open orders) but made
// straight from the engine's records, so a checkpoint costs milliseconds on the matching thread
// instead of the seconds serialize() + msgpack + stateHash() took on a deep book (166 k open
// orders: 0.6–1.9 s, measured 2026-12-03; docs/engine.md "Checkpoints").
//
// Binary snapshot ("KWS2"):
//   [0..4)   magic "KWS2" (u32 little-endian)
//   [4..8)   u32 LE header bytes (UTF-8 JSON: SnapshotHeader, everything but the orders)
//   [8..12)  u32 LE open orders n
//   [12..16) u32 LE order section bytes
//   header JSON
//   n orders, each a run of unsigned LEB128 varints (safe integers): order_id, user_id,
//     interval_id, price_ticks (zigzag: prices may be negative), remaining_wh, filled_wh, seq,
//     expire_at_ms (0 = none), codes (side | source << 1 | order_type << 4 | stp << 7, indexes into
//     the SIDES / SOURCES / ORDER_TYPES / STP_MODES tables), the client order id's length in UTF-16
//     code units, then each code unit (lossless: lone surrogates survive).
// ~25–35 bytes per order (a float64 layout was ~95: PostgreSQL's CPU to store a snapshot grows with
// its bytes). Orders are in the engine's slot order (no sort on the matching thread); decoding puts
// them in seq order, which is what ZoneEngine.restore() expects.
import { ORDER_TYPES, SIDES, SOURCES, STP_MODES } from './codes.js';
import type { EngineSnapshot, OrderView } from './types.js';

export const SNAPSHOT_MAGIC = 0x3253574b; // "KWS2" read as a little-endian u32
/** Bytes before the header JSON. */
export const SNAPSHOT_PREFIX = 16;
/** Prefix of a checkpoint hash (checkpointHash()); a bare 16-hex-digit hash is a stateHash(). */
export const CHECKPOINT_HASH_PREFIX = 'v2:';

/** Everything in EngineSnapshot except the orders. */
export type SnapshotHeader = Omit<EngineSnapshot, 'orders'>;

/** Whether these bytes are a binary snapshot (else they are the older msgpack of serialize()). */
export function isBinarySnapshot(bytes: Uint8Array): boolean {
  return bytes.length >= SNAPSHOT_PREFIX && new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true) === SNAPSHOT_MAGIC;
}

/** The EngineSnapshot a binary snapshot holds (orders in seq order): what serialize() gave then. */
export function decodeSnapshot(bytes: Uint8Array): EngineSnapshot {
  if (!isBinarySnapshot(bytes)) throw new Error('not a binary engine snapshot (magic KWS2)');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerBytes = dv.getUint32(4, true);
  const n = dv.getUint32(8, true);
  const orderBytes = dv.getUint32(12, true);
  const ordersAt = SNAPSHOT_PREFIX + headerBytes;
  const end = ordersAt + orderBytes;
  if (bytes.byteLength !== end) throw new Error(`engine snapshot is ${bytes.byteLength} bytes, its prefix says ${end}`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(SNAPSHOT_PREFIX, ordersAt))) as SnapshotHeader;
  if (header.version !== 1) throw new Error(`unsupported engine snapshot version ${String(header.version)}`);
  let p = ordersAt;
  const next = (): number => {
    let v = 0;
    let scale = 1;
    for (;;) {
      if (p >= end) throw new Error('engine snapshot: order section cut short');
      const x = bytes[p++];
      v += (x & 0x7f) * scale;
      if (x < 0x80) return v;
      scale *= 128;
    }
  };
  const orders: OrderView[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const order_id = next();
    const user_id = next();
    const interval_id = next();
    const z = next();
    const price_ticks = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    const remaining_wh = next();
    const filled_wh = next();
    const seq = next();
    const expire_at_ms = next();
    const codes = next();
    const len = next();
    let client_order_id = '';
    for (let k = 0; k < len; k++) client_order_id += String.fromCharCode(next());
    orders[i] = {
      order_id,
      user_id,
      client_order_id,
      interval_id,
      side: SIDES[codes & 1],
      source: SOURCES[(codes >> 1) & 7],
      order_type: ORDER_TYPES[(codes >> 4) & 7],
      stp: STP_MODES[(codes >> 7) & 3],
      price_ticks,
      qty_wh: filled_wh + remaining_wh,
      remaining_wh,
      filled_wh,
      seq,
      expire_at_ms,
    };
  }
  if (p !== end) throw new Error(`engine snapshot: ${end - p} bytes after its ${n} orders`);
  orders.sort((a, b) => a.seq - b.seq);
  return { ...header, orders };
}

/** Writes a non-negative safe integer as an unsigned LEB128 varint at p; returns the end. */
export function putVarint(b: Uint8Array, p: number, v: number): number {
  if (v < 0x80) {
    b[p] = v;
    return p + 1;
  }
  if (v <= 0x7fffffff) {
    let x = v | 0;
    do {
      b[p++] = (x & 0x7f) | 0x80;
      x >>>= 7;
    } while (x >= 0x80);
    b[p] = x;
    return p + 1;
  }
  while (v >= 0x80) {
    const low = v % 128;
    b[p++] = low | 0x80;
    v = (v - low) / 128;
  }
  b[p++] = v;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint hash: the header's JSON through FNV-1a (2 lanes, hashString), then every open order
// hashed on its own (murmur-style mixing of its fields, two 32-bit lanes) and added up: a
// multiset hash, the same whatever order the orders are visited in. The final value mixes the
// header lanes, the two sums and the order count.

/** One 32-bit word into a lane. */
export function mixWord(h: number, w: number, m: number): number {
  h = Math.imul(h ^ w, m);
  return h ^ (h >>> 15);
}

/** A safe integer (any sign) into a lane, as its low and high 32-bit words. */
export function mixNumber(h: number, v: number, m: number): number {
  return mixWord(mixWord(h, v >>> 0, m), Math.floor(v / 4294967296) | 0, m);
}

/** murmur3's finaliser. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export const LANE_A_SEED = 0x9747b28c;
export const LANE_B_SEED = 0x1b873593;
export const LANE_A_MUL = 0x5bd1e995;
export const LANE_B_MUL = 0xcc9e2d51;
