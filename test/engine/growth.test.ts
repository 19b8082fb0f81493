// Growth of the order pool and its indexes (order id ring, client order id table): an engine that
// starts with 16 slots and grows many times on the way must behave exactly as one sized up front
// for the whole stream, including while a growth of the id ring or a rebuild of the client order
// id table is still in progress (both move a few entries per new order).
import { describe, expect, it } from 'vitest';
import { ZoneEngine } from '../../engine/index.js';
import type { Command, Side } from '../../engine/index.js';
import { mulberry32 } from '../../bench/prng.js';
import { DEFAULT_CONFIG, IV, IV2, ZONE } from './helpers.js';

/**
 * A book that fills to `peak` open orders in waves, interleaving places (mostly resting, some
 * crossing), cancels, amends, good-till-time orders and client order ids reused after their order
 * closed (and while it is open: duplicates). Order ids leave gaps, so ring cells collide and some
 * orders live in the id overflow.
 */
function growthStream(seed: number, commands: number, peak: number): Command[] {
  const r = mulberry32(seed);
  const out: Command[] = [{ ...DEFAULT_CONFIG, max_open_orders_per_user: 100_000, ts_ms: 0 } as Command];
  for (const iv of [IV, IV2]) out.push({ type: 'OPEN_INTERVAL', ts_ms: 0, interval_id: iv, capacity_wh: 1e12 });
  const open: { id: number; user: number; coid: string }[] = [];
  const closedCoids: { user: number; coid: string }[] = [];
  let id = 1;
  let ts = 1;
  for (let i = 0; i < commands; i++) {
    ts += r() < 0.1 ? 1 : 0;
    // grow towards the peak, then shrink to a third of it, and again
    const wave = Math.floor(i / (commands / 4)) % 2 === 0;
    const x = r();
    if (open.length > 0 && (x < (wave ? 0.15 : 0.55) || open.length > peak)) {
      const j = Math.floor(r() * open.length);
      const o = open[j];
      if (r() < 0.8) {
        out.push({ type: 'CANCEL', ts_ms: ts, order_id: o.id, user_id: o.user });
        open[j] = open[open.length - 1];
        open.pop();
        closedCoids.push({ user: o.user, coid: o.coid });
      } else {
        out.push({ type: 'AMEND', ts_ms: ts, order_id: o.id, user_id: o.user, price_ticks: 1 + Math.floor(r() * 400), qty_wh: 1 + Math.floor(r() * 50) });
      }
      continue;
    }
    id += r() < 0.2 ? 1 + Math.floor(r() * 5000) : 1;
    const user = 1 + Math.floor(r() * 50);
    const coid = `g${id}`;
    const y = r();
    if (y < 0.05 && closedCoids.length > 0) {
      // an id used again after its order closed: accepted (it may cross and close again)
      const c = closedCoids[Math.floor(r() * closedCoids.length)];
      out.push(place(ts, id, c.user, c.coid, r));
      continue;
    }
    if (y < 0.15 && open.length > 0) {
      // the id of an order of this user that may still be open (amends and fills are not tracked): a duplicate if it is
      const o = open[Math.floor(r() * open.length)];
      out.push(place(ts, id, o.user, o.coid, r));
      continue;
    }
    const crossing = r() < 0.05;
    const side: Side = r() < 0.5 ? 'BUY' : 'SELL';
    const price = crossing ? (side === 'BUY' ? 600 : -600) : side === 'BUY' ? -1 - Math.floor(r() * 400) : 1 + Math.floor(r() * 400);
    out.push({
      type: 'PLACE', ts_ms: ts, order_id: id, user_id: user, client_order_id: coid, zone_id: ZONE, interval_id: r() < 0.9 ? IV : IV2,
      side, source: side === 'BUY' ? 'ANY' : 'SOLAR', order_type: 'LIMIT', price_ticks: price, qty_wh: 1 + Math.floor(r() * 20),
      ...(r() < 0.05 ? { expire_at_ms: ts + 1 + Math.floor(r() * 2000) } : {}),
    });
    if (!crossing) open.push({ id, user, coid });
  }
  return out;
}

function place(ts: number, id: number, user: number, coid: string, r: () => number): Command {
  const side: Side = r() < 0.5 ? 'BUY' : 'SELL';
  return {
    type: 'PLACE', ts_ms: ts, order_id: id, user_id: user, client_order_id: coid, zone_id: ZONE, interval_id: IV,
    side, source: side === 'BUY' ? 'ANY' : 'SOLAR', order_type: 'LIMIT', price_ticks: side === 'BUY' ? -5 : 5, qty_wh: 3,
  };
}

describe('order pool growth', () => {
  for (const [seed, peak] of [
    [1, 3000],
    [2, 9000],
    [3, 600],
  ] as const) {
    it(`from 16 slots gives the same events, serialize() and checkpointHash() as a pre-sized engine (seed ${seed}, up to ${peak} open)`, () => {
      const cmds = growthStream(seed, 40_000, peak);
      const small = new ZoneEngine(ZONE, { initial_order_slots: 16 });
      const batched = new ZoneEngine(ZONE, { initial_order_slots: 16 });
      const big = new ZoneEngine(ZONE, { initial_order_slots: 1 << 15 });
      let duplicates = 0;
      for (let i = 0; i < cmds.length; i += 32) {
        const to = Math.min(cmds.length, i + 32);
        const want: unknown[] = [];
        const got: unknown[] = [];
        for (let k = i; k < to; k++) {
          const ev = big.apply(cmds[k]);
          for (const e of ev) if (e.type === 'REJECTED' && e.reason === 'DUPLICATE_CLIENT_ORDER_ID') duplicates++;
          want.push(ev);
          got.push(small.apply(cmds[k]));
        }
        expect(got).toEqual(want);
        // executeBatch reads the indexes ahead of running the commands: the same through a growth
        batched.executeBatch(cmds, i, to);
        if ((i / 32) % 50 === 0 || to === cmds.length) {
          const s = big.serialize();
          expect(small.serialize()).toEqual(s);
          expect(batched.serialize()).toEqual(s);
          expect(small.checkpointHash()).toBe(big.checkpointHash());
          expect(batched.checkpointHash()).toBe(big.checkpointHash());
        }
      }
      expect(small.openOrderCount).toBe(big.openOrderCount);
      expect(duplicates).toBeGreaterThan(0);
    });
  }
});
