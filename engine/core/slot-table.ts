// Compact open-addressing tables from a hash (or an order id's low bits) to an order slot, in one
// Int32Array each, so a probe costs one cache line. The engine verifies every candidate against
// the order's own record, so these tables never hold full keys.

/**
 * Fingerprint -> slot multimap (the client order id index): cells of [fingerprint, slot + 1]
 * interleaved (slot + 1 = 0 marks a free cell), Robin Hood linear probing from fp & mask,
 * backward-shift deletion, no tombstones. Several entries may share a fingerprint (different keys
 * that hash alike): a lookup walks them and the caller checks each slot.
 */
export class FpSlotTable {
  cells: Int32Array;
  mask: number;
  size = 0;

  constructor(capacity = 1024) {
    let cap = 16;
    while (cap < capacity * 2) cap *= 2;
    this.cells = new Int32Array(cap * 2);
    this.mask = cap - 1;
  }

  /** Cell index of the first entry with this fingerprint at or after `from` on its probe run, or -1. */
  find(fp: number, from = -1): number {
    const cells = this.cells;
    const mask = this.mask;
    const home = fp & mask;
    let i: number;
    let dist: number;
    if (from < 0) {
      i = home;
      dist = 0;
    } else {
      i = (from + 1) & mask;
      dist = (i - home) & mask;
    }
    for (;;) {
      const s = cells[2 * i + 1];
      if (s === 0) return -1;
      const f = cells[2 * i];
      if (f === fp) return i;
      if (((i - (f & mask)) & mask) < dist) return -1;
      i = (i + 1) & mask;
      dist++;
    }
  }

  /** The slot held by cell i (from find). */
  slotAt(i: number): number {
    return this.cells[2 * i + 1] - 1;
  }

  add(fp: number, slot: number): void {
    if ((this.size + 1) * 2 > this.mask + 1) this.grow();
    this.insert(fp, slot + 1);
    this.size++;
  }

  /**
   * add() without growing past half full: for a table being retired, which must not pay an O(n)
   * growth. The caller keeps it well below full (a full table would probe forever).
   */
  put(fp: number, slot: number): void {
    this.insert(fp, slot + 1);
    this.size++;
  }

  private insert(fp: number, sv: number): void {
    const cells = this.cells;
    const mask = this.mask;
    let i = fp & mask;
    let dist = 0;
    for (;;) {
      const s = cells[2 * i + 1];
      if (s === 0) {
        cells[2 * i] = fp;
        cells[2 * i + 1] = sv;
        return;
      }
      const f = cells[2 * i];
      const d = (i - (f & mask)) & mask;
      if (d < dist) {
        // take the richer resident's cell and carry the resident on
        cells[2 * i] = fp;
        cells[2 * i + 1] = sv;
        fp = f;
        sv = s;
        dist = d;
      }
      i = (i + 1) & mask;
      dist++;
    }
  }

  /** Removes the entry (fp, slot); returns whether it was there. */
  remove(fp: number, slot: number): boolean {
    const cells = this.cells;
    const mask = this.mask;
    const sv = slot + 1;
    let i = fp & mask;
    for (let dist = 0; ; dist++) {
      const s = cells[2 * i + 1];
      if (s === 0) return false;
      const f = cells[2 * i];
      if (f === fp && s === sv) break;
      if (((i - (f & mask)) & mask) < dist) return false;
      i = (i + 1) & mask;
    }
    for (;;) {
      const j = (i + 1) & mask;
      const s = cells[2 * j + 1];
      if (s === 0) break;
      const f = cells[2 * j];
      if ((f & mask) === j) break;
      cells[2 * i] = f;
      cells[2 * i + 1] = s;
      i = j;
    }
    cells[2 * i] = 0;
    cells[2 * i + 1] = 0;
    this.size--;
    return true;
  }

  /**
   * Empties cells [from, to) (cell indexes) and, when that reaches the end, the table: a table kept
   * for reuse is emptied a few cells at a time, so neither a pass over it nor fresh memory (page
   * faults) lands on one command.
   */
  clearCells(from: number, to: number): void {
    const cells = this.cells;
    for (let i = 2 * from; i < 2 * to; i++) cells[i] = 0;
    if (to > this.mask) this.size = 0;
  }

  private grow(): void {
    const old = this.cells;
    this.cells = new Int32Array(old.length * 2);
    this.mask = old.length - 1; // (old cells) * 2 - 1
    for (let i = 0; i < old.length; i += 2) if (old[i + 1] !== 0) this.insert(old[i], old[i + 1]);
  }
}
