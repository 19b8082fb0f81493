// An aggregated price-level book (L2) with sorted price arrays: O(log n) lookup, top-N in O(N).
import type { WireLevel } from './checksum.js';

function search(arr: number[], price: number, desc: boolean): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = arr[mid];
    if (desc ? v > price : v < price) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class LevelSide {
  readonly prices: number[] = [];
  readonly qty = new Map<number, number>();
  constructor(readonly desc: boolean) {}
  /** Sets a level's quantity (0 removes it). */
  set(price: number, qty: number): void {
    const had = this.qty.has(price);
    if (qty <= 0) {
      if (!had) return;
      this.qty.delete(price);
      const i = search(this.prices, price, this.desc);
      this.prices.splice(i, 1);
      return;
    }
    this.qty.set(price, qty);
    if (!had) this.prices.splice(search(this.prices, price, this.desc), 0, price);
  }
  best(): number | undefined {
    return this.prices[0];
  }
  clear(): void {
    this.prices.length = 0;
    this.qty.clear();
  }
}

export class LevelBook {
  readonly bids = new LevelSide(true);
  readonly asks = new LevelSide(false);
  side(s: 'BUY' | 'SELL'): LevelSide {
    return s === 'BUY' ? this.bids : this.asks;
  }
}

/** The top `depth` levels of one side as wire strings, best first. */
export function wireLevels(side: LevelSide, depth: number, price: (t: number) => string, qty: (wh: number) => string): WireLevel[] {
  const out: WireLevel[] = [];
  const n = Math.min(depth, side.prices.length);
  for (let i = 0; i < n; i++) {
    const p = side.prices[i];
    out.push({ price: price(p), qty: qty(side.qty.get(p)!) });
  }
  return out;
}
