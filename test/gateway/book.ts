// A client-side L2 book rebuilt from snapshot + deltas, with the documented CRC32 check.
import { bookChecksum } from '../../gateway/checksum.js';
import type { Json } from './client.js';

export class ClientBook {
  bids = new Map<string, string>();
  asks = new Map<string, string>();
  seq = -1;
  epoch = '';
  checksumsChecked = 0;
  mismatches = 0;
  gaps = 0;
  snapshots = 0;

  sorted(side: 'bids' | 'asks'): [string, string][] {
    return [...this[side]].sort((a, b) => (side === 'bids' ? Number(b[0]) - Number(a[0]) : Number(a[0]) - Number(b[0])));
  }
  checksum(): number {
    const lv = (s: 'bids' | 'asks') => this.sorted(s).slice(0, 10).map(([price, qty]) => ({ price, qty }));
    return bookChecksum(lv('bids'), lv('asks'));
  }
  /** Applies a book message; returns false on a gap (the caller resyncs). */
  apply(m: Json): boolean {
    if (m.snapshot) {
      this.bids = new Map(m.bids);
      this.asks = new Map(m.asks);
      this.seq = m.seq;
      this.epoch = m.epoch;
      this.snapshots++;
    } else {
      if (m.epoch !== this.epoch || m.seq !== this.seq + 1) {
        this.gaps++;
        return false;
      }
      for (const [side, price, qty] of m.changes as [string, string, string][]) {
        const book = side === 'BUY' ? this.bids : this.asks;
        if (Number(qty) === 0) book.delete(price);
        else book.set(price, qty);
      }
      this.seq = m.seq;
    }
    this.checksumsChecked++;
    if (this.checksum() !== m.checksum) this.mismatches++;
    return true;
  }
}
