// Adapter in front of nodejs-order-book@10.1.1 (the independent price-time book used as the
// differential oracle in test/engine and as the benchmark peer). It has no trade list: fills are
// derived from its result, as its README describes ("Understanding Order Results"):
// - done[] holds the fully filled makers (their size = quantity taken) in execution order, plus
//   the taker itself when it filled completely;
// - partial is the last, partly filled maker (partialQuantityProcessed = quantity taken), or the
//   taker when its remainder rests / is cancelled.
// Drive it with integer prices and sizes only (it uses floats) and never with modify() (it is
// cancel + new). Market orders carry no protection price there.
import { OrderBook, type LimitOrderOptions, type MarketOrderOptions } from 'nodejs-order-book';

export interface PeerFill {
  maker_order_id: number;
  taker_order_id: number;
  price_ticks: number;
  qty_wh: number;
}

interface PeerResult {
  done: { id: string; size: number; price: number }[];
  partial: { id: string; price: number } | null;
  partialQuantityProcessed: number;
  err: unknown;
}

export class PeerBook {
  readonly ob = new OrderBook();

  /** GTC or IOC limit order; returns its fills in execution order. */
  limit(order_id: number, side: 'buy' | 'sell', price: number, size: number, tif: 'GTC' | 'IOC' = 'GTC'): PeerFill[] {
    const id = String(order_id);
    return fillsOf(this.ob.limit({ id, side, size, price, timeInForce: tif } as unknown as LimitOrderOptions) as unknown as PeerResult, id, order_id);
  }

  /** Market order (no protection price); order_id only labels the fills. */
  market(order_id: number, side: 'buy' | 'sell', size: number): PeerFill[] {
    return fillsOf(this.ob.market({ side, size } as unknown as MarketOrderOptions) as unknown as PeerResult, '', order_id);
  }

  cancel(order_id: number): boolean {
    return this.ob.cancel(String(order_id)) !== undefined;
  }

  /** Aggregated depth, best first: { asks, bids } of [price, size]. */
  depth(): { asks: [number, number][]; bids: [number, number][] } {
    const [asks, bids] = this.ob.depth() as unknown as [[number, number][], [number, number][]];
    return { asks, bids };
  }
}

/** Hot-path variant for the benchmark: processes the order and returns only the number of fills. */
export function peerFillCount(r: { done: { id: string }[]; partial: { id: string } | null }, takerId: string): number {
  let n = 0;
  for (const d of r.done) if (d.id !== takerId) n++;
  if (r.partial !== null && r.partial.id !== takerId) n++;
  return n;
}

function fillsOf(r: PeerResult, takerId: string, taker_order_id: number): PeerFill[] {
  if (r.err) throw new Error(`peer rejected order ${taker_order_id}: ${String(r.err)}`);
  const out: PeerFill[] = [];
  for (const d of r.done) {
    if (d.id !== takerId) out.push({ maker_order_id: Number(d.id), taker_order_id, price_ticks: d.price, qty_wh: d.size });
  }
  if (r.partial !== null && r.partial.id !== takerId) {
    out.push({ maker_order_id: Number(r.partial.id), taker_order_id, price_ticks: r.partial.price, qty_wh: r.partialQuantityProcessed });
  }
  return out;
}
