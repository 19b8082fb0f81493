import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buyerFeeFactors, buyerMaxMinor, formatMinor, notionalFine, pricingFactors, settlementAmounts, sideFeeFine } from '../../ledger/money.js';
import { ZONE } from './fixtures.js';

const f = pricingFactors(ZONE);

describe('rounding rule', () => {
  it('holds notional plus the buyer fee at the limit price, rounded down (2500 ticks × 10 kWh → 250 + 11.25 → 261 cents)', () => {
    expect(buyerMaxMinor(f, 2500, 10_000)).toBe(261n);
  });

  it('splits a shortfall settlement: buyer 84, seller 75, fee 8, rounding 1, refund 127 (2000 ticks, 4 of 10 kWh)', () => {
    const escrow = buyerMaxMinor(f, 2000, 10_000);
    expect(escrow).toBe(211n);
    expect(settlementAmounts(f, 2000, 4_000, escrow)).toEqual({
      buyer_paid_minor: 84n, seller_net_minor: 75n, fee_minor: 8n, rounding_minor: 1n, refund_minor: 127n,
    });
  });

  it('never pays a seller a negative amount when the per-kWh fee exceeds the price', () => {
    const g = pricingFactors({ ...ZONE, fee_bps: 0, fee_per_kwh_minor: 100n });
    const a = settlementAmounts(g, 1, 1_000, buyerMaxMinor(g, 1, 1_000));
    expect(a.seller_net_minor).toBe(0n);
    expect(a.buyer_paid_minor).toBe(a.seller_net_minor + a.fee_minor + a.rounding_minor);
  });

  it('rejects malformed zone pricing with INVALID_ZONE', () => {
    for (const bad of [{ tick_size: '0' }, { tick_size: '-1' }, { tick_size: '1e-4' }, { minor_units: 9 }, { fee_bps: 10_001 }, { currency: 'eur' }]) {
      expect(() => pricingFactors({ ...ZONE, ...bad })).toThrow(expect.objectContaining({ code: 'INVALID_ZONE' }));
    }
  });

  it('formats minor units as decimal strings', () => {
    expect(formatMinor(12345n, 2)).toBe('123.45');
    expect(formatMinor(5n, 2)).toBe('0.05');
    expect(formatMinor(-5n, 3)).toBe('-0.005');
    expect(formatMinor(7n, 0)).toBe('7');
  });
});

const pricing = fc.record({
  minor_units: fc.integer({ min: 0, max: 8 }),
  tick_size: fc.constantFrom('1', '0.01', '0.0001', '0.00025', '0.0000001'),
  fee_bps: fc.integer({ min: 0, max: 10_000 }),
  fee_per_kwh_minor: fc.bigInt({ min: 0n, max: 10_000n }),
});

describe('rounding rule properties', () => {
  it('conserves value in every settlement: buyer pays = seller + fee + rounding, rounding ≤ 2, nobody gets more than exact', () => {
    fc.assert(
      fc.property(pricing, fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 1e9 }), fc.double({ min: 0, max: 1, noNaN: true }), (p, price, qty, frac) => {
        const g = pricingFactors({ ...ZONE, ...p });
        const delivered = Math.floor(qty * frac);
        const escrow = buyerMaxMinor(g, price, qty);
        const a = settlementAmounts(g, price, delivered, escrow);
        expect(a.buyer_paid_minor).toBe(a.seller_net_minor + a.fee_minor + a.rounding_minor);
        expect(a.buyer_paid_minor + a.refund_minor).toBe(escrow);
        expect(a.rounding_minor >= 0n && a.rounding_minor <= 2n).toBe(true);
        expect(a.refund_minor >= 0n && a.fee_minor >= 0n && a.seller_net_minor >= 0n).toBe(true);
        const exactFee = sideFeeFine(g, price, delivered);
        const exactNotional = notionalFine(g, price, delivered);
        expect(a.buyer_paid_minor * g.fine_per_minor <= exactNotional + exactFee).toBe(true);
        expect(a.fee_minor * g.fine_per_minor <= 2n * exactFee).toBe(true);
      }),
      { numRuns: 2000, seed: 5 },
    );
  });

  it('a hold always covers any sequence of fills at or below the limit, releasing a non-negative amount at each', () => {
    fc.assert(
      fc.property(pricing, fc.integer({ min: 0, max: 1e7 }), fc.array(fc.tuple(fc.integer({ min: 1, max: 1e6 }), fc.double({ min: 0, max: 1, noNaN: true })), { minLength: 1, maxLength: 20 }), (p, limit, fills) => {
        const g = pricingFactors({ ...ZONE, ...p });
        const total = fills.reduce((s, [q]) => s + q, 0);
        let held = buyerMaxMinor(g, limit, total);
        let remaining = total;
        for (const [q, r] of fills) {
          const price = Math.floor(limit * r);
          const escrow = buyerMaxMinor(g, price, q);
          remaining -= q;
          const still = buyerMaxMinor(g, limit, remaining);
          const released = held - escrow - still;
          expect(released >= 0n).toBe(true);
          held = still;
        }
        expect(held).toBe(0n);
      }),
      { numRuns: 1000, seed: 6 },
    );
  });

  it('with a fee change between order and trade: the buyer pays the lower fee, the seller the trade-time one, escrow covers it and value is conserved', () => {
    const fee = fc.record({ fee_bps: fc.integer({ min: 0, max: 10_000 }), fee_per_kwh_minor: fc.bigInt({ min: 0n, max: 10_000n }) });
    fc.assert(
      fc.property(pricing, fee, fc.integer({ min: 0, max: 1e7 }), fc.integer({ min: 1, max: 1e7 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (p, later, limit, qty, r, frac) => {
        const order = pricingFactors({ ...ZONE, ...p });
        const trade = pricingFactors({ ...ZONE, ...p, ...later });
        const price = Math.floor(limit * r);
        const buyer = buyerFeeFactors(order, trade, price);
        expect(sideFeeFine(buyer, price, qty) <= sideFeeFine(order, price, qty) && sideFeeFine(buyer, price, qty) <= sideFeeFine(trade, price, qty)).toBe(true);
        const escrow = buyerMaxMinor(buyer, price, qty);
        expect(escrow <= buyerMaxMinor(order, limit, qty)).toBe(true); // the hold at the limit covers it
        const delivered = Math.floor(qty * frac);
        const a = settlementAmounts(buyer, price, delivered, escrow, trade);
        expect(a.buyer_paid_minor).toBe(a.seller_net_minor + a.fee_minor + a.rounding_minor);
        expect(a.buyer_paid_minor + a.refund_minor).toBe(escrow);
        expect(a.rounding_minor >= 0n && a.rounding_minor <= 1n && a.refund_minor >= 0n && a.fee_minor >= 0n).toBe(true);
        const n = notionalFine(order, price, delivered);
        expect(a.seller_net_minor * order.fine_per_minor <= (n > sideFeeFine(trade, price, delivered) ? n - sideFeeFine(trade, price, delivered) : 0n)).toBe(true);
        expect(a.fee_minor * order.fine_per_minor <= sideFeeFine(buyer, price, delivered) + sideFeeFine(trade, price, delivered)).toBe(true);
      }),
      { numRuns: 2000, seed: 7 },
    );
  });
});
