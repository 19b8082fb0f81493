// Open-addressing hash map from a positive safe integer to an int32, in typed arrays.
// Used on the hot path (order id -> slot) where a JS Map costs a hash-table object per entry
// and boxes keys above 2^31. Linear probing with backward-shift deletion: no tombstones, so
// lookups stay short however many orders come and go.

const EMPTY = 0; // keys are positive, so 0 marks a free cell

export class IntMap {
  private keys: Float64Array;
  private vals: Int32Array;
  private mask: number;
  size = 0;

  constructor(capacity = 1024) {
    let cap = 16;
    while (cap < capacity * 2) cap *= 2;
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private home(key: number): number {
    const lo = key | 0; // low 32 bits (ToInt32 is modulo 2^32)
    const hi = (key / 4294967296) | 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1);
    h ^= h >>> 16;
    return h & this.mask;
  }

  /** The value for key, or -1. */
  get(key: number): number {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(key);
    for (;;) {
      const k = keys[i];
      if (k === key) return this.vals[i];
      if (k === EMPTY) return -1;
      i = (i + 1) & mask;
    }
  }

  set(key: number, value: number): void {
    if ((this.size + 1) * 2 > this.keys.length) this.grow();
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(key);
    for (;;) {
      const k = keys[i];
      if (k === key) {
        this.vals[i] = value;
        return;
      }
      if (k === EMPTY) {
        keys[i] = key;
        this.vals[i] = value;
        this.size++;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** Removes key; returns whether it was there. */
  delete(key: number): boolean {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = this.home(key);
    for (;;) {
      const k = keys[i];
      if (k === key) break;
      if (k === EMPTY) return false;
      i = (i + 1) & mask;
    }
    // Backward-shift: pull later entries of the probe run into the hole when their home allows it.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const k = keys[j];
      if (k === EMPTY) break;
      const h = this.home(k);
      const movable = j > i ? h <= i || h > j : h <= i && h > j;
      if (movable) {
        keys[i] = k;
        vals[i] = vals[j];
        i = j;
      }
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
