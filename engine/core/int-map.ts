// Open-addressing hash map from a positive safe integer to an int32, in typed arrays.
// Used on the hot path (order id -> slot) where a JS Map costs a hash-table object per entry
// and boxes keys above 2^31. Robin Hood linear probing with backward-shift deletion: no
// tombstones, short probe runs, and a delete stops at the first entry sitting at its home, so
// keys that arrive in sequence (identity hashing) cost O(1) to insert, find and delete.

const EMPTY = 0; // keys are positive, so 0 marks a free cell

export class IntMap {
  private keys: Float64Array;
  private vals: Int32Array;
  private mask: number;
  size = 0;

  /**
   * identity: hash by the key's low bits (keys that arrive roughly in sequence, like the
   * sequencer's order ids, then land in neighbouring cells: cache-friendly). Otherwise keys are mixed.
   */
  constructor(
    capacity = 1024,
    private readonly identity = false,
  ) {
    let cap = 16;
    while (cap < capacity * 2) cap *= 2;
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private home(key: number): number {
    const lo = key | 0; // low 32 bits (ToInt32 is modulo 2^32)
    const hi = (key * 2.3283064365386963e-10) | 0; // key / 2^32: exact, and a multiply is cheaper than a divide
    if (this.identity) return (lo ^ (lo >>> 20) ^ hi) & this.mask;
    let h = Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1);
    h ^= h >>> 16;
    return h & this.mask;
  }

  /** The value for key, or -1. */
  get(key: number): number {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(key);
    for (let dist = 0; ; dist++) {
      const k = keys[i];
      if (k === key) return this.vals[i];
      // Robin Hood order: once the resident is closer to its home than we are to ours, key is absent.
      if (k === EMPTY || ((i - this.home(k)) & mask) < dist) return -1;
      i = (i + 1) & mask;
    }
  }

  set(key: number, value: number): void {
    if ((this.size + 1) * 2 > this.keys.length) this.grow();
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = this.home(key);
    let dist = 0;
    for (;;) {
      const k = keys[i];
      if (k === key) {
        vals[i] = value;
        return;
      }
      if (k === EMPTY) {
        keys[i] = key;
        vals[i] = value;
        this.size++;
        return;
      }
      const kDist = (i - this.home(k)) & mask;
      if (kDist < dist) {
        // Take the richer resident's cell and carry it on (the key is new: a richer resident means absent).
        const v = vals[i];
        keys[i] = key;
        vals[i] = value;
        key = k;
        value = v;
        dist = kDist;
        for (;;) {
          i = (i + 1) & mask;
          dist++;
          const k2 = keys[i];
          if (k2 === EMPTY) {
            keys[i] = key;
            vals[i] = value;
            this.size++;
            return;
          }
          const d2 = (i - this.home(k2)) & mask;
          if (d2 < dist) {
            const v2 = vals[i];
            keys[i] = key;
            vals[i] = value;
            key = k2;
            value = v2;
            dist = d2;
          }
        }
      }
      i = (i + 1) & mask;
      dist++;
    }
  }

  /** Removes key; returns whether it was there. */
  delete(key: number): boolean {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = this.home(key);
    for (let dist = 0; ; dist++) {
      const k = keys[i];
      if (k === key) break;
      if (k === EMPTY || ((i - this.home(k)) & mask) < dist) return false;
      i = (i + 1) & mask;
    }
    // Backward shift until an empty cell or an entry already at its home.
    for (;;) {
      const j = (i + 1) & mask;
      const k = keys[j];
      if (k === EMPTY || this.home(k) === j) break;
      keys[i] = k;
      vals[i] = vals[j];
      i = j;
    }
    keys[i] = EMPTY;
    this.size--;
    return true;
  }

  clear(): void {
    this.keys.fill(0);
    this.size = 0;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    this.keys = new Float64Array(oldKeys.length * 2);
    this.vals = new Int32Array(oldKeys.length * 2);
    this.mask = this.keys.length - 1;
    this.size = 0;
    for (let i = 0; i < oldKeys.length; i++) if (oldKeys[i] !== EMPTY) this.set(oldKeys[i], oldVals[i]);
  }
}
