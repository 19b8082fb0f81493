// CRC32 book checksum, Kraken's scheme on kwx's wire strings (docs/protocol.md "Checksum").
import { CHECKSUM_DEPTH } from './limits.js';

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib) of an ASCII string, unsigned. */
export function crc32(s: string): number {
  let c = 0xffffffff;
  for (let i = 0; i < s.length; i++) c = TABLE[(c ^ s.charCodeAt(i)) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Incremental CRC-32 over the decimal digits of integers (a '-' first for a negative one), without
 * building strings: `crc32Digits(crc32Digits(CRC32_INIT, 2000), 1500)` … then `crc32Finish`
 * equals crc32("20001500"). |n| must be a safe integer.
 */
export const CRC32_INIT = 0xffffffff;
const DIGITS = new Uint8Array(20);
export function crc32Digits(c: number, n: number): number {
  if (n < 0) {
    c = TABLE[(c ^ 45) & 0xff] ^ (c >>> 8);
    n = -n;
  }
  let k = 0;
  do {
    DIGITS[k++] = 48 + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
  while (k > 0) c = TABLE[(c ^ DIGITS[--k]) & 0xff] ^ (c >>> 8);
  return c;
}
export function crc32Finish(c: number): number {
  return (c ^ 0xffffffff) >>> 0;
}

/** "0.0120" → "120", "1.500" → "1500", "-0.0010" → "-10", "0.000" → "0". */
export function stripDecimal(s: string): string {
  const neg = s.charCodeAt(0) === 45; // '-'
  const body = neg ? s.slice(1) : s;
  const dot = body.indexOf('.');
  const all = dot < 0 ? body : body.slice(0, dot) + body.slice(dot + 1);
  let k = 0;
  while (k < all.length && all.charCodeAt(k) === 48) k++; // leading '0's
  const digits = k === 0 ? all : all.slice(k);
  if (digits === '') return '0';
  return neg ? `-${digits}` : digits;
}

export interface WireLevel {
  price: string;
  qty: string;
}

/**
 * The checksummed string: the best CHECKSUM_DEPTH asks from lowest price up, then the best
 * CHECKSUM_DEPTH bids from highest price down; for each level its price then its quantity, each
 * with the '.' removed and leading zeros stripped; all concatenated with no separator.
 * `asks` and `bids` are given best first.
 */
export function checksumString(bids: readonly WireLevel[], asks: readonly WireLevel[], depth = CHECKSUM_DEPTH): string {
  let s = '';
  for (let i = 0; i < asks.length && i < depth; i++) s += stripDecimal(asks[i].price) + stripDecimal(asks[i].qty);
  for (let i = 0; i < bids.length && i < depth; i++) s += stripDecimal(bids[i].price) + stripDecimal(bids[i].qty);
  return s;
}

export function bookChecksum(bids: readonly WireLevel[], asks: readonly WireLevel[], depth = CHECKSUM_DEPTH): number {
  return crc32(checksumString(bids, asks, depth));
}
