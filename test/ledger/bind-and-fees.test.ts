// bindHold (moving an open buy hold to the engine's order id) and the platform fee schedule by
// effective_from (order time for the hold, trade time for the fee charged), in memory and through
// PostgreSQL (a restart rebuilds both).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { LedgerStore, loadFeeSchedules, loadLedger } from '../../ledger/store.js';
import { LedgerError } from '../../ledger/errors.js';
import { buyerMaxMinor, pricingFactors, settlementAmounts } from '../../ledger/money.js';
import { BUYER, codeOf, newLedger, OTHER, SELLER, T0, ZONE } from './fixtures.js';

const bal = (l: ReturnType<typeof newLedger>, u: number): bigint[] => {
  const b = l.balances(u, 'EUR');
  return [b.available_minor, b.held_minor, b.escrow_minor];
};

function funded(options: { record_changes?: boolean } = {}): ReturnType<typeof newLedger> {
  const l = newLedger(options);
  l.deposit({ transfer_id: 'dep1', user_id: BUYER, currency: 'EUR', amount_minor: 1000n }, T0);
  return l;
}

const GW = 7; // a gateway hold id
const ORDER = (1 << 30) + 5; // the engine's order id
const hold = { order_id: GW, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 };

describe('bindHold: an open hold moves to the engine order id', () => {
  it('moves the hold with the same amounts and pricing, moves no money, and the order fills and releases under its new id', () => {
    const l = funded();
    l.holdBuyOrder(hold, T0);
    const transfers = l.core.transfer_count;
    expect(l.bindHold({ from_order_id: GW, to_order_id: ORDER }, T0 + 1)).toEqual({ from_order_id: GW, order_id: ORDER, held_minor: 261n });
    expect(l.core.transfer_count).toBe(transfers); // same HELD account: nothing to transfer
    expect(bal(l, BUYER)).toEqual([739n, 261n, 0n]);
    const from = l.holds.get(GW)!;
    const to = l.holds.get(ORDER)!;
    expect(from).toMatchObject({ status: 'MOVED', moved_to_order_id: ORDER, remaining_minor: 0n });
    expect(to).toMatchObject({ status: 'OPEN', bound_from_order_id: GW, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000, held_minor: 261n, remaining_minor: 261n, remaining_wh: 10_000 });
    expect(to.pricing).toBe(from.pricing);
    l.checkInvariants();
    // The old id is closed: no fill, no release; the new one works as any hold.
    expect(codeOf(() => l.fillBuyOrder({ trade_id: 1, order_id: GW, seller_id: SELLER, price_ticks: 2000, qty_wh: 1, interval_id: 1, source: 'SOLAR' }, T0))).toBe('ORDER_NOT_OPEN');
    expect(codeOf(() => l.releaseBuyOrder({ order_id: GW, reason: 'CANCELLED' }, T0))).toBe('ORDER_NOT_OPEN');
    expect(l.fillBuyOrder({ trade_id: 1, order_id: ORDER, seller_id: SELLER, price_ticks: 2000, qty_wh: 4_000, interval_id: 1, source: 'SOLAR' }, T0 + 2))
      .toEqual({ trade_id: 1, escrow_minor: 84n, released_minor: 21n });
    expect(l.releaseBuyOrder({ order_id: ORDER, reason: 'CANCELLED' }, T0 + 3)).toEqual({ order_id: ORDER, released_minor: 156n });
    expect(bal(l, BUYER)).toEqual([916n, 0n, 84n]);
    l.checkInvariants();
  });

  it('is idempotent: a retry after it applied returns the same result and changes nothing, even after the order traded', () => {
    const l = funded();
    l.holdBuyOrder(hold, T0);
    const first = l.bindHold({ from_order_id: GW, to_order_id: ORDER }, T0 + 1);
    l.fillBuyOrder({ trade_id: 1, order_id: ORDER, seller_id: SELLER, price_ticks: 2500, qty_wh: 10_000, interval_id: 1, source: 'SOLAR' }, T0 + 2);
    const before = l.snapshot();
    expect(l.bindHold({ from_order_id: GW, to_order_id: ORDER }, T0 + 9)).toEqual(first);
    expect(l.snapshot()).toEqual(before);
    // The original hold call, retried, is harmless too.
    expect(l.holdBuyOrder(hold, T0 + 9)).toEqual({ order_id: GW, held_minor: 261n });
    expect(l.snapshot()).toEqual(before);
  });

  it('refuses with stable codes: not open (HOLD_NOT_FOUND, ORDER_NOT_OPEN), target taken (HOLD_EXISTS), bad ids (INVALID_TRANSFER); a refusal changes nothing', () => {
    const l = funded();
    l.deposit({ transfer_id: 'dep2', user_id: OTHER, currency: 'EUR', amount_minor: 1000n }, T0);
    l.holdBuyOrder(hold, T0);
    l.holdBuyOrder({ ...hold, order_id: 8 }, T0);
    l.holdBuyOrder({ ...hold, order_id: 9, user_id: OTHER }, T0);
    l.releaseBuyOrder({ order_id: 8, reason: 'CANCELLED' }, T0);
    const before = l.snapshot();
    expect(codeOf(() => l.bindHold({ from_order_id: 99, to_order_id: ORDER }, T0))).toBe('HOLD_NOT_FOUND');
    expect(codeOf(() => l.bindHold({ from_order_id: 8, to_order_id: ORDER }, T0))).toBe('ORDER_NOT_OPEN'); // cancelled
    expect(codeOf(() => l.bindHold({ from_order_id: GW, to_order_id: 9 }, T0))).toBe('HOLD_EXISTS'); // someone's order
    expect(codeOf(() => l.bindHold({ from_order_id: GW, to_order_id: 8 }, T0))).toBe('HOLD_EXISTS'); // a closed hold's id
    expect(codeOf(() => l.bindHold({ from_order_id: GW, to_order_id: GW }, T0))).toBe('INVALID_TRANSFER');
    expect(codeOf(() => l.bindHold({ from_order_id: GW, to_order_id: 0 }, T0))).toBe('INVALID_TRANSFER');
    expect(codeOf(() => l.bindHold({ from_order_id: GW, to_order_id: 1.5 }, T0))).toBe('INVALID_TRANSFER');
    expect(l.snapshot()).toEqual(before);
    // Moved once: moving it elsewhere is ORDER_NOT_OPEN; a filled hold cannot move either.
    l.bindHold({ from_order_id: GW, to_order_id: ORDER }, T0);
    expect(codeOf(() => l.bindHold({ from_order_id: GW, to_order_id: ORDER + 1 }, T0))).toBe('ORDER_NOT_OPEN');
    l.fillBuyOrder({ trade_id: 1, order_id: ORDER, seller_id: SELLER, price_ticks: 2500, qty_wh: 10_000, interval_id: 1, source: 'SOLAR' }, T0);
    expect(codeOf(() => l.bindHold({ from_order_id: ORDER, to_order_id: ORDER + 1 }, T0))).toBe('ORDER_NOT_OPEN');
    l.checkInvariants();
  });

  it('is never refused by the store’s outage admission gate (a consequence of an accepted order), unlike a new hold', () => {
    const l = funded();
    l.holdBuyOrder(hold, T0);
    l.setAdmission(() => {
      throw new LedgerError('EXCHANGE_UNAVAILABLE', 'backlog full');
    });
    expect(codeOf(() => l.holdBuyOrder({ ...hold, order_id: 11 }, T0))).toBe('EXCHANGE_UNAVAILABLE');
    expect(l.bindHold({ from_order_id: GW, to_order_id: ORDER }, T0)).toMatchObject({ order_id: ORDER });
    expect(l.fillBuyOrder({ trade_id: 1, order_id: ORDER, seller_id: SELLER, price_ticks: 2500, qty_wh: 10_000, interval_id: 1, source: 'SOLAR' }, T0)).toMatchObject({ escrow_minor: 261n });
  });
});

describe('fee schedule by effective_from', () => {
  const T1 = T0 + 60_000; // the fee changes here
  const at = (bps: number, per_kwh: bigint, from: number, zone_id: number | null = 1) => ({ zone_id, effective_from_ms: from, fee_bps: bps, fee_per_kwh_minor: per_kwh });

  it('picks the schedule in force at a time: the zone’s own, else the platform default, else the configured fee', () => {
    const l = newLedger();
    expect(l.feeAt(1, T0)).toEqual({ fee_bps: 50, fee_per_kwh_minor: 1n, source: 'ZONE_CONFIG', effective_from_ms: null });
    l.setFeeSchedule(at(20, 0n, T0, null));
    l.setFeeSchedule(at(100, 2n, T1));
    expect(l.feeAt(1, T0 - 1)).toMatchObject({ fee_bps: 50, source: 'ZONE_CONFIG' });
    expect(l.feeAt(1, T0)).toEqual({ fee_bps: 20, fee_per_kwh_minor: 0n, source: 'PLATFORM_SCHEDULE', effective_from_ms: T0 });
    expect(l.feeAt(1, T1 - 1)).toMatchObject({ fee_bps: 20, source: 'PLATFORM_SCHEDULE' });
    expect(l.feeAt(1, T1)).toEqual({ fee_bps: 100, fee_per_kwh_minor: 2n, source: 'ZONE_SCHEDULE', effective_from_ms: T1 });
    // Same (zone, effective_from) replaces; bad values are INVALID_ZONE; unknown zone UNKNOWN_ZONE.
    l.setFeeSchedule(at(90, 2n, T1));
    expect(l.feeAt(1, T1 + 5).fee_bps).toBe(90);
    expect(codeOf(() => l.setFeeSchedule(at(10_001, 0n, T1)))).toBe('INVALID_ZONE');
    expect(codeOf(() => l.setFeeSchedule(at(10, -1n, T1)))).toBe('INVALID_ZONE');
    expect(codeOf(() => l.setFeeSchedule(at(10, 0n, T1, 0)))).toBe('INVALID_ZONE');
    expect(codeOf(() => l.setFeeSchedule(at(10, 0n, Number.NaN)))).toBe('INVALID_ZONE');
    expect(codeOf(() => l.feeAt(42, T1))).toBe('UNKNOWN_ZONE');
  });

  it('the hold is taken at the fee in force when the order is placed', () => {
    const l = funded();
    l.setFeeSchedule(at(0, 0n, T1));
    // Before T1: 50 bps + 1 cent/kWh (261); from T1: no fee (250).
    expect(l.holdBuyOrder({ ...hold, order_id: 1 }, T1 - 1).held_minor).toBe(261n);
    expect(l.holdBuyOrder({ ...hold, order_id: 2 }, T1).held_minor).toBe(250n);
    expect(l.holds.get(1)!.pricing).toMatchObject({ fee_bps: 50, fee_per_kwh_minor: 1n });
    expect(l.holds.get(2)!.pricing).toMatchObject({ fee_bps: 0, fee_per_kwh_minor: 0n });
    l.checkInvariants();
  });

  it('the fee charged is the one in force at trade time; a fee cut benefits a resting order at once', () => {
    const l = funded();
    l.holdBuyOrder({ ...hold, order_id: 1 }, T0); // held at 50 bps + 1 cent
    l.setFeeSchedule(at(10, 0n, T1));
    const fill = { trade_id: 1, order_id: 1, seller_id: SELLER, price_ticks: 2000, qty_wh: 10_000, interval_id: 1, source: 'SOLAR' as const };
    // Trade at T1: 10 bps, no per-kWh fee, on both sides. Escrow = 200 + 0.2 → 200 cents.
    const r = l.fillBuyOrder(fill, T1 + 5);
    expect(r).toEqual({ trade_id: 1, escrow_minor: 200n, released_minor: 61n });
    const f = pricingFactors({ ...ZONE, fee_bps: 10, fee_per_kwh_minor: 0n });
    expect(r.escrow_minor).toBe(buyerMaxMinor(f, 2000, 10_000));
    // Settlement later, after yet another change: still the trade-time fee.
    l.setFeeSchedule(at(500, 5n, T1 + 1_000));
    const s = l.settleTrade({ trade_id: 1, delivered_wh: 10_000 }, T1 + 2_000);
    expect(s).toMatchObject(settlementAmounts(f, 2000, 10_000, 200n));
    expect(s).toMatchObject({ buyer_paid_minor: 200n, seller_net_minor: 199n, fee_minor: 0n, rounding_minor: 1n, refund_minor: 0n });
    l.checkInvariants();
  });

  it('a fee rise charges the seller the new fee at trade time, but never the buyer more than its hold was taken for', () => {
    const l = funded();
    l.holdBuyOrder({ ...hold, order_id: 1 }, T0); // held at 50 bps + 1 cent/kWh: 261 for 10 kWh at 2500
    l.setFeeSchedule(at(200, 3n, T1)); // 2 % + 3 cents/kWh from T1
    const r = l.fillBuyOrder({ trade_id: 1, order_id: 1, seller_id: SELLER, price_ticks: 2500, qty_wh: 10_000, interval_id: 1, source: 'WIND', traded_at_ms: T1 }, T1 + 10);
    expect(r).toEqual({ trade_id: 1, escrow_minor: 261n, released_minor: 0n }); // buyer: the order-time fee (the lower one)
    expect(l.escrows.get(1)!.trade_pricing).toMatchObject({ fee_bps: 200, fee_per_kwh_minor: 3n });
    const s = l.settleTrade({ trade_id: 1, delivered_wh: 10_000 }, T1 + 20);
    // Buyer pays 250 + 11.25 → 261; seller gets 250 − (5 + 30) = 215; fee ⌊11.25 + 35⌋ = 46; rounding 0.
    expect(s).toMatchObject({ buyer_paid_minor: 261n, seller_net_minor: 215n, fee_minor: 46n, rounding_minor: 0n, refund_minor: 0n });
    expect(s.buyer_paid_minor).toBe(s.seller_net_minor + s.fee_minor + s.rounding_minor);
    // traded_at_ms picks the schedule, not the time the fill is recorded.
    l.holdBuyOrder({ ...hold, order_id: 2 }, T0 + 1);
    l.deposit({ transfer_id: 'dep3', user_id: BUYER, currency: 'EUR', amount_minor: 1000n }, T0);
    const early = l.fillBuyOrder({ trade_id: 2, order_id: 2, seller_id: SELLER, price_ticks: 2500, qty_wh: 10_000, interval_id: 1, source: 'WIND', traded_at_ms: T1 - 1 }, T1 + 30);
    expect(early.escrow_minor).toBe(261n);
    expect(l.escrows.get(2)!.trade_pricing).toMatchObject({ fee_bps: 50, fee_per_kwh_minor: 1n });
    l.checkInvariants();
  });
});

describe('bindHold and fee schedules through PostgreSQL', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('a bound hold and trade-time fees survive a restart; retries after it change nothing', async () => {
    const l = funded({ record_changes: true });
    const store = new LedgerStore(db.sql, l);
    l.holdBuyOrder(hold, T0);
    await store.flush();
    l.bindHold({ from_order_id: GW, to_order_id: ORDER }, T0 + 1);
    l.setFeeSchedule({ zone_id: 1, effective_from_ms: T0 + 2, fee_bps: 200, fee_per_kwh_minor: 3n });
    l.fillBuyOrder({ trade_id: 1, order_id: ORDER, seller_id: SELLER, price_ticks: 2000, qty_wh: 5_000, interval_id: 1, source: 'SOLAR' }, T0 + 3);
    await store.flush();
    const rebuilt = await loadLedger(db.sql);
    expect(rebuilt.snapshot()).toEqual(l.snapshot());
    expect(rebuilt.holds.get(GW)).toMatchObject({ status: 'MOVED', moved_to_order_id: ORDER });
    expect(rebuilt.holds.get(ORDER)).toMatchObject({ status: 'OPEN', bound_from_order_id: GW });
    expect(rebuilt.escrows.get(1)!.trade_pricing).toMatchObject({ fee_bps: 200, fee_per_kwh_minor: 3n });
    // After the restart (zones are configuration again): the retry is harmless, settlement charges the trade-time fee.
    rebuilt.configureZone(ZONE, T0 + 10);
    const store2 = new LedgerStore(db.sql, rebuilt);
    const before = rebuilt.snapshot();
    expect(rebuilt.bindHold({ from_order_id: GW, to_order_id: ORDER }, T0 + 11)).toEqual({ from_order_id: GW, order_id: ORDER, held_minor: 261n });
    expect(rebuilt.snapshot()).toEqual(before);
    const expected = l.settleTrade({ trade_id: 1, delivered_wh: 5_000 }, T0 + 12);
    expect(rebuilt.settleTrade({ trade_id: 1, delivered_wh: 5_000 }, T0 + 12)).toEqual(expected);
    expect(expected.seller_net_minor).toBe(100n - 2n - 15n); // 2 % and 3 cents/kWh of 5 kWh at 0.20
    rebuilt.releaseBuyOrder({ order_id: ORDER, reason: 'CANCELLED' }, T0 + 13);
    await store2.flush();
    expect((await loadLedger(db.sql)).snapshot()).toEqual(rebuilt.snapshot());
    // The database keeps the link consistent: a MOVED hold must name its target, and one hold moves once.
    await expect(db.sql`update ledger_order_holds set moved_to_order_id = null where order_id = ${GW}`).rejects.toThrow(/ledger_order_holds_moved_check/);
    await expect(db.sql`update ledger_order_holds set bound_from_order_id = ${GW} where order_id = ${GW}`).rejects.toThrow(/ledger_order_holds_bound_from_key/);
  });

  it('loadFeeSchedules reads fee_schedules (zone rows and the platform default, by effective_from)', async () => {
    const [zone] = await db.sql<{ id: string }[]>`insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh)
      values ('FEE-TEST', 'fee test', 'EUR', 0.0001, 1000000, 0, 100000, 1000000) returning id`;
    const z = Number(zone.id);
    const ts = (ms: number): Date => new Date(ms);
    await db.sql`insert into fee_schedules (zone_id, fee_bps, fee_per_kwh_minor, effective_from) values
      (null, 30, 0, ${ts(T0)}), (null, 40, 0, ${ts(T0 + 120_000)}), (${z}, 70, 2, ${ts(T0 + 60_000)})`;
    const l = newLedger();
    l.configureZone({ ...ZONE, zone_id: z }, T0);
    l.configureZone({ ...ZONE, zone_id: z + 1 }, T0);
    expect(await loadFeeSchedules(db.sql, l)).toBe(3);
    expect(l.feeAt(z, T0 - 1).source).toBe('ZONE_CONFIG');
    expect(l.feeAt(z, T0)).toEqual({ fee_bps: 30, fee_per_kwh_minor: 0n, source: 'PLATFORM_SCHEDULE', effective_from_ms: T0 });
    expect(l.feeAt(z, T0 + 60_000)).toEqual({ fee_bps: 70, fee_per_kwh_minor: 2n, source: 'ZONE_SCHEDULE', effective_from_ms: T0 + 60_000 });
    expect(l.feeAt(z, T0 + 200_000)).toMatchObject({ fee_bps: 70, source: 'ZONE_SCHEDULE' }); // the zone's own wins over a later platform default
    expect(l.feeAt(z + 1, T0 + 200_000)).toMatchObject({ fee_bps: 40, source: 'PLATFORM_SCHEDULE' });
    // A rebuild loads them too (zones are configured again after it).
    const rebuilt = await loadLedger(db.sql);
    rebuilt.configureZone({ ...ZONE, zone_id: z }, T0);
    expect(rebuilt.feeAt(z, T0 + 60_000)).toMatchObject({ fee_bps: 70, source: 'ZONE_SCHEDULE' });
  });
});
