/**
 * The transfer-id index: string id → seq, an open-addressing hash table in typed arrays.
 * A JS Map with millions of string keys costs ~0.6 µs per insert here (rehashing and cache
 * misses on a heap table); this table costs a fraction of that, and idempotency needs one lookup
 * and one insert per transfer. Linear probing, load factor ≤ 1/2, backward-shift deletion (used
 * only to roll back a linked chain). The hash seed is random per instance: it changes no
 * observable state, only the layout, and keeps chosen ids from clustering on purpose.
 */
import { randomBytes } from 'node:crypto';

/** At most this many ids (the slot array is an Int32Array with load factor 1/2). */
export const MAX_INDEXED_IDS = 2 ** 29;
const INITIAL_CAPACITY = 1 << 16;

export class IdIndex {
  private mask = INITIAL_CAPACITY - 1;
  private slots = new Int32Array(INITIAL_CAPACITY);
  private hashes = new Uint32Array(INITIAL_CAPACITY);
  /** keys[value] = id. Values are positive integers (0 marks an empty slot). */
  private readonly keys: (string | undefined)[] = [undefined];
  private readonly seed = randomBytes(4).readUInt32LE(0);
  size = 0;

  /** FNV-1a over UTF-16 code units, seeded. */
  hash(s: string): number {
    let h = (0x811c9dc5 ^ this.seed) >>> 0;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return h >>> 0;
  }

  /**
   * The hash of a transfer id, or -1 when the id is not 1..max_length printable ASCII
   * characters (0x21..0x7e): validation and hashing in one pass over the characters.
   */
  hashId(s: string, max_length: number): number {
    const n = s.length;
    if (n === 0 || n > max_length) return -1;
    let h = (0x811c9dc5 ^ this.seed) >>> 0;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x21 || c > 0x7e) return -1;
      h ^= c;
      h = Math.imul(h, 0x01000193);
    }
    return h >>> 0;
  }

  /** The value stored for `s`, or 0. */
  get(s: string, h: number = this.hash(s)): number {
    const slots = this.slots, hashes = this.hashes, keys = this.keys, mask = this.mask;
    let i = h & mask;
    for (;;) {
      const v = slots[i];
      if (v === 0) return 0;
      if (hashes[i] === h && keys[v] === s) return v;
      i = (i + 1) & mask;
    }
  }

  /** Adds `s` → `value`; the caller has checked that `s` is absent. */
  insert(s: string, value: number, h: number = this.hash(s)): void {
    if ((this.size + 1) * 2 > this.mask + 1) this.grow();
    const slots = this.slots, mask = this.mask;
    let i = h & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = value;
    this.hashes[i] = h;
    this.keys[value] = s;
    this.size++;
  }

  /** Removes `s` (backward-shift deletion keeps every probe chain intact). */
  delete(s: string, h: number = this.hash(s)): void {
    const slots = this.slots, hashes = this.hashes, mask = this.mask;
    let i = h & mask;
    for (;;) {
      const v = slots[i];
      if (v === 0) return;
      if (hashes[i] === h && this.keys[v] === s) break;
      i = (i + 1) & mask;
    }
    this.keys[slots[i]] = undefined;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (slots[j] === 0) break;
      const k = hashes[j] & mask;
      // Move slot j back to i unless its home k lies cyclically in (i, j].
      const between = i <= j ? i < k && k <= j : i < k || k <= j;
      if (!between) {
        slots[i] = slots[j];
        hashes[i] = hashes[j];
        i = j;
      }
    }
    slots[i] = 0;
    this.size--;
  }

  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    if (capacity / 2 > MAX_INDEXED_IDS) throw new Error(`id index is full (${MAX_INDEXED_IDS} ids)`);
    const oldSlots = this.slots, oldHashes = this.hashes;
    this.mask = capacity - 1;
    this.slots = new Int32Array(capacity);
    this.hashes = new Uint32Array(capacity);
    for (let j = 0; j < oldSlots.length; j++) {
      const v = oldSlots[j];
      if (v === 0) continue;
      let i = oldHashes[j] & this.mask;
      while (this.slots[i] !== 0) i = (i + 1) & this.mask;
      this.slots[i] = v;
      this.hashes[i] = oldHashes[j];
    }
  }
}
