// The engine's checkpoint forms: a binary snapshot and a checkpoint hash, both of the same
// canonical state as serialize() (config, counters, intervals, sellers, open orders) but made
// straight from the engine's records, so a checkpoint costs milliseconds on the matching thread
// instead of the seconds serialize() + msgpack + stateHash() took on a deep book (166 k open
// orders: 0.6–1.9 s, measured 2026-12-03; docs/engine.md "Checkpoints").
//
// Binary snapshot ("KWS2"), little-endian (checked on decode):
//   [0..4)   magic "KWS2"
//   [4..8)   u32 header bytes (UTF-8 JSON: SnapshotHeader)
//   [8..12)  u32 open orders n
//   [12..16) u32 client order id code units (UTF-16) in all
//   header JSON, zero padding to a multiple of 8
//   n × ORDER_CELLS float64: order_id, user_id, interval_id, price_ticks, remaining_wh, filled_wh,
//     seq, expire_at_ms, codes (side | source << 1 | order_type << 4 | stp << 7, indexes into the
//     SIDES / SOURCES / ORDER_TYPES / STP_MODES tables), client order id length (code units)
//   the client order ids, concatenated, as UTF-16 code units (lossless: lone surrogates survive)
// Orders are in the engine's slot order (no sort on the matching thread); decoding puts them in
// seq order, which is what ZoneEngine.restore() expects.
import { ORDER_TYPES, SIDES, SOURCES, STP_MODES } from './codes.js';
import type { EngineSnapshot, IntervalView, OrderView, SellerView, ZoneConfig } from './types.js';

export const SNAPSHOT_MAGIC = 0x3253574b; // "KWS2" read as a little-endian u32
export const ORDER_CELLS = 10;
/** Bytes before the header JSON. */
export const SNAPSHOT_PREFIX = 16;
/** Prefix of a checkpoint hash (checkpointHash()); a bare 16-hex-digit hash is a stateHash(). */
export const CHECKPOINT_HASH_PREFIX = 'v2:';

/** Everything in EngineSnapshot except the orders. */
export interface SnapshotHeader {
  version: 1;
  zone_id: number;
  config: ZoneConfig | null;
  next_seq: number;
  event_seq: number;
  trade_seq: number;
  last_ts_ms: number;
  intervals: IntervalView[];
  sellers: SellerView[];
}

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
  const units = dv.getUint32(12, true);
  const ordersAt = align8(SNAPSHOT_PREFIX + headerBytes);
  const coidsAt = ordersAt + n * ORDER_CELLS * 8;
  if (bytes.byteLength !== coidsAt + units * 2) throw new Error(`engine snapshot is ${bytes.byteLength} bytes, its prefix says ${coidsAt + units * 2}`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(SNAPSHOT_PREFIX, SNAPSHOT_PREFIX + headerBytes))) as SnapshotHeader;
  if (header.version !== 1) throw new Error(`unsupported engine snapshot version ${String(header.version)}`);
  const orders: OrderView[] = new Array(n);
  let u = coidsAt;
  for (let i = 0; i < n; i++) {
    const at = ordersAt + i * ORDER_CELLS * 8;
    const cell = (k: number): number => dv.getFloat64(at + k * 8, true);
    const codes = cell(8);
    const len = cell(9);
    let coid = '';
    for (let k = 0; k < len; k++) coid += String.fromCharCode(dv.getUint16(u + 2 * k, true));
    u += 2 * len;
    const remaining = cell(4);
    const filled = cell(5);
    orders[i] = {
      order_id: cell(0),
      user_id: cell(1),
      client_order_id: coid,
      interval_id: cell(2),
      side: SIDES[codes & 1],
      source: SOURCES[(codes >> 1) & 7],
      order_type: ORDER_TYPES[(codes >> 4) & 7],
      stp: STP_MODES[(codes >> 7) & 3],
      price_ticks: cell(3),
      qty_wh: filled + remaining,
      remaining_wh: remaining,
      filled_wh: filled,
      seq: cell(6),
      expire_at_ms: cell(7),
    };
  }
  orders.sort((a, b) => a.seq - b.seq);
  return { ...header, orders };
}

export function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Little-endian machine? (the snapshot's float64 and UTF-16 sections are written in host order) */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

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
