// Market data end to end: snapshot + deltas rebuild the engine's book exactly (every checksum
// matching) after thousands of random orders; gaps trigger a resync; trades, ticker (with exact
// VWAP), status and heartbeats.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bookChecksum, checksumString, crc32, CRC32_INIT, crc32Digits, crc32Finish } from '../../gateway/checksum.js';
import { ticksToPrice, whToKwh, priceUnit } from '../../gateway/units.js';
import { ClientBook } from './book.js';
import { startExchange, type Exchange } from './harness.js';

let ex: Exchange;
beforeAll(async () => {
  ex = await startExchange({ limits: { heartbeat_idle_ms: 300 } });
  for (const who of [ex.actors.alice, ex.actors.bob, ex.actors.carol]) await ex.deposit(who, '100000000.00');
});
afterAll(async () => ex?.stop());

/** A deterministic PRNG (mulberry32) so a failing run can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function engineL2(ex: Exchange, interval_id: number) {
  const unit = priceUnit('0.0001');
  const snap = ex.core.engine(ex.zone_id).serialize();
  const bids = new Map<string, number>();
  const asks = new Map<string, number>();
  for (const o of snap.orders) {
    if (o.interval_id !== interval_id) continue;
    const m = o.side === 'BUY' ? bids : asks;
    const p = ticksToPrice(o.price_ticks, unit);
    m.set(p, (m.get(p) ?? 0) + o.remaining_wh);
  }
  const conv = (m: Map<string, number>) => new Map([...m].map(([p, q]) => [p, whToKwh(q)]));
  return { bids: conv(bids), asks: conv(asks) };
}

describe('checksum', () => {
  it('checksums the documented string: asks low→high then bids high→low, price+qty with "." and leading zeros removed', () => {
    const s = checksumString([{ price: '0.2000', qty: '1.500' }, { price: '0.1000', qty: '0.001' }], [{ price: '0.3000', qty: '12.000' }]);
    expect(s).toBe('3000' + '12000' + '2000' + '1500' + '1000' + '1');
    expect(crc32('123456789')).toBe(0xcbf43926); // the CRC-32 check value
    expect(bookChecksum([], [])).toBe(0);
  });

  it('the publisher’s digit-wise CRC equals crc32 of the concatenated integers (0, negatives, large values)', () => {
    const rand = rng(7);
    for (let t = 0; t < 2000; t++) {
      const ints = Array.from({ length: 1 + Math.floor(rand() * 40) }, () => {
        const r = rand();
        const big = Math.floor(rand() * Number.MAX_SAFE_INTEGER);
        const v = r < 0.1 ? 0 : r < 0.4 ? Math.floor(rand() * 10_000) : big;
        return rand() < 0.2 ? -v : v;
      });
      let c = CRC32_INIT;
      for (const n of ints) c = crc32Digits(c, n);
      expect(crc32Finish(c)).toBe(crc32(ints.map((n) => String(n)).join('')));
    }
    expect(crc32Finish(CRC32_INIT)).toBe(crc32(''));
  });
});

describe('book stream', () => {
  it('a subscriber rebuilds the book from snapshot + deltas and ends equal to the engine’s after 3,000 random orders, every checksum matching', async () => {
    const sub = await ex.anon({ msgpack: true });
    const book = new ClientBook();
    sub.onMessage = (m) => {
      if (m.type === 'book' && m.interval_id === ex.interval_id) book.apply(m);
    };
    await sub.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval_id });
    await sub.next((m) => m.type === 'book' && m.snapshot === true);
    const traders = await Promise.all([ex.login(ex.actors.alice), ex.login(ex.actors.bob), ex.login(ex.actors.carol)]);
    const rand = rng(42);
    const open: { c: number; id: number }[] = [];
    let last = 0;
    for (let i = 0; i < 3000; i++) {
      const t = Math.floor(rand() * 3);
      const r = rand();
      if (r < 0.15 && open.length > 0) {
        const [o] = open.splice(Math.floor(rand() * open.length), 1);
        traders[o.c].send({ type: 'cancel', order_id: o.id, req_id: `c${i}` });
      } else if (r < 0.2 && open.length > 0) {
        const o = open[Math.floor(rand() * open.length)];
        traders[o.c].send({ type: 'amend', order_id: o.id, qty: `${1 + Math.floor(rand() * 5)}.000`, req_id: `a${i}` });
      } else {
        const side = rand() < 0.5 ? 'BUY' : 'SELL';
        const price = (side === 'BUY' ? 900 + Math.floor(rand() * 120) : 1000 + Math.floor(rand() * 120) - 20) / 10000;
        const type = rand() < 0.85 ? 'LIMIT' : 'IOC';
        traders[t].send({
          type: 'place', req_id: `p${i}`, zone_id: ex.zone_id, interval_id: ex.interval_id, client_order_id: `o${i}`, side, order_type: type,
          source: side === 'SELL' ? 'SOLAR' : 'ANY', price: price.toFixed(4), qty: `${1 + Math.floor(rand() * 9)}.${Math.floor(rand() * 1000).toString().padStart(3, '0')}`,
        });
        const ack = await traders[t].next((m) => m.req_id === `p${i}`);
        if (ack.type === 'ack' && (ack.status === 'ACTIVE' || ack.status === 'PARTIALLY_FILLED')) open.push({ c: t, id: ack.order_id });
      }
      last = i;
    }
    // one last round trip on each trader so every request has been handled
    for (const c of traders) await c.request({ type: 'ping' });
    const engineSeq = ex.gw.publisher!.book(ex.zone_id, ex.interval_id);
    expect(engineSeq).toBeDefined();
    await sub.request({ type: 'ping' });
    const want = engineL2(ex, ex.interval_id);
    expect(book.mismatches).toBe(0);
    expect(book.gaps).toBe(0);
    expect(book.checksumsChecked).toBeGreaterThan(1000);
    expect(new Map([...book.bids].sort())).toEqual(new Map([...want.bids].sort()));
    expect(new Map([...book.asks].sort())).toEqual(new Map([...want.asks].sort()));
    expect(want.bids.size + want.asks.size).toBeGreaterThan(10);
    expect(last).toBe(2999);
    for (const c of traders) c.close();
    sub.close();
  });

  it('a gap on the bus makes the gateway resync: subscribers get a fresh snapshot (reason RESYNC) that matches the engine', async () => {
    const sub = await ex.anon();
    const book = new ClientBook();
    sub.onMessage = (m) => {
      if (m.type === 'book' && m.interval_id === ex.interval2_id) book.apply(m);
    };
    await sub.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval2_id });
    await sub.next((m) => m.type === 'book' && m.snapshot);
    const a = await ex.login(ex.actors.alice);
    await a.request({ type: 'place', zone_id: ex.zone_id, interval_id: ex.interval2_id, client_order_id: 'g1', side: 'SELL', source: 'WIND', order_type: 'LIMIT', price: '0.1500', qty: '1.000' });
    await sub.next((m) => m.type === 'book' && !m.snapshot);
    // Simulate a message lost between publisher and gateway: one delta skips a sequence number.
    ex.gw.bus.publish(`book.${ex.zone_id}.${ex.interval2_id}`, { type: 'book', zone_id: ex.zone_id, interval_id: ex.interval2_id, epoch: book.epoch, seq: book.seq + 2, snapshot: false, changes: [['SELL', '0.9999', '5.000']], checksum: 1, ts: 0 });
    const snap = await sub.next((m) => m.type === 'book' && m.snapshot && m.reason === 'RESYNC');
    expect(snap.asks).toEqual([['0.1500', '1.000']]);
    expect(book.mismatches).toBe(0);
    const metrics = await ex.registry.metrics();
    expect(metrics).toMatch(/kwx_md_resyncs_total\{[^}]*reason="GAP"[^}]*\} [1-9]/);
    a.close();
    sub.close();
  });

  it('a client that detects a gap itself asks "resync" and gets a snapshot equal to the engine’s book', async () => {
    const sub = await ex.anon();
    await sub.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval_id });
    await sub.next((m) => m.type === 'book' && m.snapshot);
    const r = await sub.request({ type: 'resync', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval_id });
    expect(r).toMatchObject({ type: 'book', snapshot: true, reason: 'REQUESTED' });
    const want = engineL2(ex, ex.interval_id);
    expect(new Map(r.bids)).toEqual(want.bids);
    expect(new Map(r.asks)).toEqual(want.asks);
    expect(await sub.request({ type: 'resync', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval2_id })).toMatchObject({ type: 'reject', code: 'NOT_SUBSCRIBED' });
    sub.close();
  });
});

describe('trades, ticker, status, heartbeat', () => {
  it('trades carry a per-channel sequence; the ticker shows last, best bid/ask, volume and the exact VWAP', async () => {
    const z = ex.zone_id;
    const iv = ex.interval2_id;
    const sub = await ex.anon();
    await sub.request({ type: 'subscribe', channel: 'trades', zone_id: z, interval_id: iv });
    await sub.request({ type: 'subscribe', channel: 'ticker', zone_id: z, interval_id: iv });
    const a = await ex.login(ex.actors.alice);
    const b = await ex.login(ex.actors.bob);
    const p = (c: typeof a, o: Record<string, unknown>) => c.request({ type: 'place', zone_id: z, interval_id: iv, order_type: 'LIMIT', ...o });
    await p(a, { client_order_id: 't1', side: 'SELL', source: 'SOLAR', price: '0.1000', qty: '1.000' });
    await p(a, { client_order_id: 't2', side: 'SELL', source: 'SOLAR', price: '0.1001', qty: '2.000' });
    // buys 1 kWh at 0.1000 and 2 kWh at 0.1001 (and takes the 0.1500 WIND ask from the gap test: 1 kWh)
    const buy = await p(b, { client_order_id: 't3', side: 'BUY', price: '0.2000', qty: '4.000' });
    expect(buy.fills.map((f: { price: string }) => f.price)).toEqual(['0.1000', '0.1001', '0.1500']);
    const t1 = await sub.next((m) => m.type === 'trade' && m.price === '0.1000');
    const t2 = await sub.next((m) => m.type === 'trade' && m.price === '0.1001');
    expect(t2.seq).toBe(t1.seq + 1);
    const tk = await sub.next((m) => m.type === 'ticker' && m.trades === 3);
    // VWAP = (1000×1 + 1001×2 + 1500×1) / 4 = 1125.5 ticks = 0.11255 EUR/kWh, printed with 4 + 6 decimals
    expect(tk).toMatchObject({ last: '0.1500', volume: '4.000', vwap: '0.1125500000', best_ask: null, trades: 3 });
    a.close();
    b.close();
    sub.close();
  });

  it('zone halts and resumes reach status subscribers; an idle connection gets heartbeats', async () => {
    const sub = await ex.anon();
    await sub.request({ type: 'subscribe', channel: 'status', zone_id: ex.zone_id });
    const first = await sub.next((m) => m.type === 'status');
    expect(first.zone_status).toBe('ACTIVE');
    const r = await ex.admin(ex.actors.operator, 'POST', `/admin/zones/${ex.zone_id}/halt`, { policy: 'KEEP_RESTING' });
    expect(r.status).toBe(200);
    const halted = await sub.next((m) => m.type === 'status' && m.zone_status === 'HALTED');
    expect(halted.seq).toBeGreaterThan(first.seq);
    await ex.admin(ex.actors.operator, 'POST', `/admin/zones/${ex.zone_id}/resume`, {});
    await sub.next((m) => m.type === 'status' && m.zone_status === 'ACTIVE' && m.seq > halted.seq);
    await sub.next((m) => m.type === 'heartbeat');
    sub.close();
  });
});
