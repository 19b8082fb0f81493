// The engine's compact indexes: the (fingerprint, slot) multimap behind client order ids, the
// order id ring with its overflow, pool growth and the lazy client order id table's rebuilds.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FpSlotTable } from '../../engine/core/slot-table.js';
import { ZoneEngine } from '../../engine/index.js';
import type { EngineEvent } from '../../engine/index.js';
import { bookState, Driver, IV, rejection } from './helpers.js';

/** Every slot stored under fp, in probe order. */
function slotsOf(t: FpSlotTable, fp: number): number[] {
  const out: number[] = [];
  for (let c = t.find(fp); c >= 0; c = t.find(fp, c)) out.push(t.slotAt(c));
  return out;
}

describe('FpSlotTable', () => {
  it('agrees with a reference multimap over random adds and removes, with shared and colliding fingerprints, through growth', () => {
    // few distinct fingerprints (many entries share one), some equal modulo the table size, and negatives
    const fp = fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 40 }).map((k) => k * 1024 + 3));
    const op = fc.tuple(fc.constantFrom('add', 'add', 'remove'), fp, fc.integer({ min: 0, max: 300 }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 2000 }), (ops) => {
        const t = new FpSlotTable(4);
        const ref = new Map<number, number[]>();
        for (const [k, f, slot] of ops) {
          const list = ref.get(f) ?? [];
          if (k === 'add') {
            if (list.includes(slot)) continue; // the engine never adds the same (fp, slot) twice
            t.add(f, slot);
            list.push(slot);
            ref.set(f, list);
          } else {
            const i = list.indexOf(slot);
            expect(t.remove(f, slot)).toBe(i >= 0);
            if (i >= 0) list.splice(i, 1);
          }
          expect(slotsOf(t, f).sort((a, b) => a - b)).toEqual([...list].sort((a, b) => a - b));
        }
        let n = 0;
        for (const [f, list] of ref) {
          n += list.length;
          expect(slotsOf(t, f).sort((a, b) => a - b)).toEqual([...list].sort((a, b) => a - b));
        }
        expect(t.size).toBe(n);
      }),
      { numRuns: 60 },
    );
  });
});

function place(e: ZoneEngine, order_id: number, user_id: number, coid: string, side: 'BUY' | 'SELL', price: number, qty = 10): EngineEvent[] {
  return e.apply({ type: 'PLACE', ts_ms: 1, order_id, user_id, client_order_id: coid, zone_id: 1, interval_id: IV, side, source: side === 'BUY' ? 'ANY' : 'SOLAR', order_type: 'LIMIT', price_ticks: price, qty_wh: qty });
}

function configured(options: ConstructorParameters<typeof ZoneEngine>[1] = {}): ZoneEngine {
  const e = new ZoneEngine(1, options);
  e.apply({ type: 'CONFIGURE_ZONE', ts_ms: 0, zone_id: 1, price_step_ticks: 1, lot_wh: 1, band_min_ticks: -1000, band_max_ticks: 1000, min_qty_wh: 1, max_qty_wh: 1_000_000, max_open_orders_per_user: 100_000 });
  e.apply({ type: 'OPEN_INTERVAL', ts_ms: 0, interval_id: IV, capacity_wh: 1e12 });
  return e;
}

describe('order id ring', () => {
  it('ids that share a ring cell (ids 1,024 apart, above 2^32, zone-shifted) are all found, cancelled, filled and rejected as duplicates exactly as with a roomy ring', () => {
    const ids: number[] = [];
    for (let k = 0; k < 40; k++) ids.push(7 * 2 ** 36 + 5 + k * 1024); // one ring cell of a 1,024-cell ring
    for (let k = 0; k < 10; k++) ids.push(3 + k * 2 ** 32); // same low 32 bits
    const run = (e: ZoneEngine): unknown[] => {
      const out: unknown[] = [];
      ids.forEach((id, i) => out.push(place(e, id, 1 + (i % 3), `c${i}`, 'BUY', -100 + i)));
      out.push(place(e, ids[0], 9, 'dup-id', 'BUY', 5)); // INVALID_ORDER: open id
      for (let i = 0; i < ids.length; i += 3) out.push(e.apply({ type: 'CANCEL', ts_ms: 1, order_id: ids[i], user_id: 1 + (i % 3) }));
      out.push(e.apply({ type: 'CANCEL', ts_ms: 1, order_id: ids[0], user_id: 1 })); // UNKNOWN_ORDER now
      out.push(place(e, 2 ** 40, 8, 'taker', 'SELL', -100, 10_000)); // fills every remaining bid
      out.push(ids.map((id) => e.order(id) ?? null));
      out.push(bookState(e), e.stateHash());
      return out;
    };
    const tight = run(configured({ initial_order_slots: 16, order_id_ring_cells: 1 }));
    const roomy = run(configured({ initial_order_slots: 4096, order_id_ring_cells: 1 << 22 }));
    expect(JSON.stringify(tight)).toBe(JSON.stringify(roomy));
    expect(rejection(tight[ids.length] as EngineEvent[])).toBe('INVALID_ORDER');
    expect(rejection(tight[ids.length + 1 + Math.ceil(ids.length / 3)] as EngineEvent[])).toBe('UNKNOWN_ORDER');
  });
});

describe('pools and client order id table', () => {
  it('pool growth from 16 slots and repeated table rebuilds keep every open order, its id and its client order id findable', () => {
    const e = configured({ initial_order_slots: 16, client_order_id_cells: 4 });
    const open = new Map<number, { user: number; coid: string }>();
    let id = 1;
    // rest 3,000 orders, cancel two thirds of them, rest 3,000 more reusing closed client order ids
    for (let i = 0; i < 3000; i++, id++) {
      const user = 1 + (i % 7);
      expect(place(e, id, user, `k${i}`, i % 2 === 0 ? 'BUY' : 'SELL', i % 2 === 0 ? -500 - (i % 50) : 500 + (i % 50))[0].type).toBe('ACCEPTED');
      open.set(id, { user, coid: `k${i}` });
    }
    for (const [oid, o] of [...open]) {
      if (oid % 3 === 0) continue;
      expect(e.apply({ type: 'CANCEL', ts_ms: 1, order_id: oid, user_id: o.user })[0].type).toBe('CANCELLED');
      open.delete(oid);
    }
    for (let i = 0; i < 3000; i++, id++) {
      const user = 1 + (i % 7);
      const coid = `k${i}`; // open again only where the earlier order was cancelled
      const held = [...open.values()].some((o) => o.user === user && o.coid === coid);
      const ev = place(e, id, user, coid, 'BUY', -900);
      if (held) expect(rejection(ev)).toBe('DUPLICATE_CLIENT_ORDER_ID');
      else {
        expect(ev[0].type).toBe('ACCEPTED');
        open.set(id, { user, coid });
      }
    }
    expect(e.openOrderCount).toBe(open.size);
    for (const [oid, o] of open) {
      expect(e.orderIdByClientOrderId(o.user, o.coid)).toBe(oid);
      expect(e.order(oid)?.client_order_id).toBe(o.coid);
    }
    expect(e.orderIdByClientOrderId(1, 'never')).toBeUndefined();
  });

  it('a client order id freed by a cancel, a fill and an amend to zero can be used again; a live one cannot, whatever the slot reuse', () => {
    const d = new Driver();
    d.buy(1, 100, 10, { client_order_id: 'a', order_id: 1 });
    expect(rejection(d.buy(1, 99, 10, { client_order_id: 'a', order_id: 2 }))).toBe('DUPLICATE_CLIENT_ORDER_ID');
    d.cancel(1, 1);
    expect(d.buy(1, 99, 10, { client_order_id: 'a', order_id: 3 })[0].type).toBe('ACCEPTED'); // likely the same slot
    d.sell(2, 99, 10, { order_id: 4 }); // fills order 3 completely
    expect(d.buy(1, 98, 10, { client_order_id: 'a', order_id: 5 })[0].type).toBe('ACCEPTED');
    d.amend(5, 1, { qty_wh: 0 });
    expect(d.buy(1, 97, 10, { client_order_id: 'a', order_id: 6 })[0].type).toBe('ACCEPTED');
    expect(rejection(d.buy(1, 96, 10, { client_order_id: 'a', order_id: 7 }))).toBe('DUPLICATE_CLIENT_ORDER_ID');
    expect(d.buy(2, 96, 10, { client_order_id: 'a', order_id: 8 })[0].type).toBe('ACCEPTED'); // another user
    expect(d.e.orderIdByClientOrderId(1, 'a')).toBe(6);
    expect(d.e.l3(IV).bids.map((o) => [o.order_id, o.price_ticks, o.qty_wh])).toEqual([
      [6, 97, 10],
      [8, 96, 10],
    ]);
  });
});
