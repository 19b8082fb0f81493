/**
 * Turning price × energy into money, exactly.
 *
 * THE ROUNDING RULE (one rule for notional and fees):
 *   1. Every amount is first computed exactly in a fine unit: 1 fine = 1 / D minor units with
 *      D = tick_den × 1000 (Wh per kWh) × 10000 (bps per 1). For a zone whose tick is
 *      tick_num / tick_den currency per kWh and whose currency has `minor_units` decimals:
 *        notional_fine(p, q) = p × q × tick_num × 10^minor_units × 10000
 *        fee_fine(p, q)      = p × q × tick_num × 10^minor_units × fee_bps
 *                            + fee_per_kwh_minor × q × tick_den × 10000          (per side)
 *      These are integers, so nothing is lost before rounding.
 *   2. Each amount that moves is rounded DOWN to whole minor units, once:
 *        buyer pays   = ⌊(notional + buyer fee) / D⌋
 *        seller gets  = max(0, ⌊(notional − seller fee) / D⌋)
 *        platform fee = min(⌊(buyer fee + seller fee) / D⌋, buyer pays − seller gets)
 *   3. What the buyer paid and nobody received (always 0 or 1 minor unit) goes to the
 *      currency's ROUNDING account: rounding = buyer pays − seller gets − platform fee.
 *   So value is conserved to the last unit, no party ever pays more than its exact amount, and
 *   no party receives more than its exact share.
 *
 * The platform fee is charged on each side of a trade (the buyer pays it on top of the price, the
 * seller has it deducted), on the delivered energy only. Holds and escrow reserve the most the
 * buyer can owe: ⌊(notional + fee) / D⌋ at the order's limit price for its quantity.
 * Negative prices are not supported by the ledger yet (NEGATIVE_PRICE_UNSUPPORTED).
 */
import { LedgerError } from './errors.js';

/** A currency has at most this many decimals (matches grid_zones.currency_minor_units). */
export const MAX_MINOR_UNITS = 8;
/** A tick size has at most this many decimals. */
export const MAX_TICK_DECIMALS = 10;
export const BPS_PER_ONE = 10_000n;
export const WH_PER_KWH = 1_000n;

/** What the ledger needs to price a zone's trades; snapshotted onto each hold and escrow. */
export interface Pricing {
  readonly currency: string;
  readonly minor_units: number;
  /** Currency per kWh per tick, as a decimal string, e.g. "0.0001". */
  readonly tick_size: string;
  readonly fee_bps: number;
  readonly fee_per_kwh_minor: bigint;
}

/** Pricing with the integer factors precomputed. */
export interface PricingFactors {
  readonly pricing: Pricing;
  readonly tick_num: bigint;
  readonly tick_den: bigint;
  /** tick_num × 10^minor_units: fine units per (tick × Wh) divided by 10000. */
  readonly notional_factor: bigint;
  readonly fee_bps: bigint;
  /** fee_per_kwh_minor × tick_den × 10000: fine units per Wh. */
  readonly fee_per_wh_fine: bigint;
  /** Fine units per minor unit. */
  readonly fine_per_minor: bigint;
}

const CURRENCY_PATTERN = /^[A-Z]{3}$/;
const DECIMAL_PATTERN = /^(\d+)(?:\.(\d+))?$/;

export function pricingFactors(pricing: Pricing): PricingFactors {
  if (!CURRENCY_PATTERN.test(pricing.currency)) throw new LedgerError('INVALID_ZONE', `currency "${pricing.currency}" is not three capital letters`);
  if (!Number.isInteger(pricing.minor_units) || pricing.minor_units < 0 || pricing.minor_units > MAX_MINOR_UNITS) {
    throw new LedgerError('INVALID_ZONE', `minor_units must be an integer 0..${MAX_MINOR_UNITS}, got ${pricing.minor_units}`);
  }
  const m = DECIMAL_PATTERN.exec(pricing.tick_size);
  if (m === null || (m[2] ?? '').length > MAX_TICK_DECIMALS) {
    throw new LedgerError('INVALID_ZONE', `tick_size "${pricing.tick_size}" must be a decimal with at most ${MAX_TICK_DECIMALS} decimals`);
  }
  const decimals = (m[2] ?? '').length;
  const tick_num = BigInt(m[1] + (m[2] ?? ''));
  const tick_den = 10n ** BigInt(decimals);
  if (tick_num <= 0n) throw new LedgerError('INVALID_ZONE', `tick_size must be positive, got "${pricing.tick_size}"`);
  if (!Number.isInteger(pricing.fee_bps) || pricing.fee_bps < 0 || pricing.fee_bps > 10_000) {
    throw new LedgerError('INVALID_ZONE', `fee_bps must be an integer 0..10000, got ${pricing.fee_bps}`);
  }
  if (typeof pricing.fee_per_kwh_minor !== 'bigint' || pricing.fee_per_kwh_minor < 0n) {
    throw new LedgerError('INVALID_ZONE', `fee_per_kwh_minor must be a non-negative bigint`);
  }
  return {
    pricing,
    tick_num,
    tick_den,
    notional_factor: tick_num * 10n ** BigInt(pricing.minor_units),
    fee_bps: BigInt(pricing.fee_bps),
    fee_per_wh_fine: pricing.fee_per_kwh_minor * tick_den * BPS_PER_ONE,
    fine_per_minor: tick_den * WH_PER_KWH * BPS_PER_ONE,
  };
}

/** Exact notional in fine units. */
export function notionalFine(f: PricingFactors, price_ticks: number, qty_wh: number): bigint {
  return BigInt(price_ticks) * BigInt(qty_wh) * f.notional_factor * BPS_PER_ONE;
}

/** Exact platform fee for one side in fine units. */
export function sideFeeFine(f: PricingFactors, price_ticks: number, qty_wh: number): bigint {
  const q = BigInt(qty_wh);
  return BigInt(price_ticks) * q * f.notional_factor * f.fee_bps + q * f.fee_per_wh_fine;
}

/** The most a buyer can owe for qty_wh at price_ticks (notional + buyer fee), rounded down. */
export function buyerMaxMinor(f: PricingFactors, price_ticks: number, qty_wh: number): bigint {
  return (notionalFine(f, price_ticks, qty_wh) + sideFeeFine(f, price_ticks, qty_wh)) / f.fine_per_minor;
}

export interface SettlementAmounts {
  readonly buyer_paid_minor: bigint;
  readonly seller_net_minor: bigint;
  readonly fee_minor: bigint;
  readonly rounding_minor: bigint;
  readonly refund_minor: bigint;
}

/**
 * The buyer's fee for a trade: the schedule in force at trade time, but never more than the one
 * snapshotted on the buyer's hold when the order was placed (what was held for it). Both fees are
 * linear in the quantity, so the cheaper one at one Wh is the cheaper one for every quantity.
 */
export function buyerFeeFactors(order: PricingFactors, trade: PricingFactors, price_ticks: number): PricingFactors {
  if (order === trade) return order;
  return sideFeeFine(trade, price_ticks, 1) < sideFeeFine(order, price_ticks, 1) ? trade : order;
}

/**
 * Splits a trade's escrow for delivered_wh at price_ticks by the rounding rule above. `f` prices
 * the buyer's side, `seller` the seller's (same currency and tick; the fee may differ, see
 * buyerFeeFactors); the platform fee is the two sides' fees together, rounded down.
 */
export function settlementAmounts(f: PricingFactors, price_ticks: number, delivered_wh: number, escrow_minor: bigint, seller: PricingFactors = f): SettlementAmounts {
  if (seller.fine_per_minor !== f.fine_per_minor || seller.notional_factor !== f.notional_factor) {
    throw new Error('ledger assertion failed: buyer and seller pricing differ in more than the fee');
  }
  const notional = notionalFine(f, price_ticks, delivered_wh);
  const fee = sideFeeFine(f, price_ticks, delivered_wh);
  const sellerFee = seller === f ? fee : sideFeeFine(seller, price_ticks, delivered_wh);
  const buyer_paid_minor = (notional + fee) / f.fine_per_minor;
  const seller_exact = notional - sellerFee;
  const seller_net_minor = seller_exact > 0n ? seller_exact / f.fine_per_minor : 0n;
  const fee_total = (fee + sellerFee) / f.fine_per_minor;
  const fee_minor = fee_total < buyer_paid_minor - seller_net_minor ? fee_total : buyer_paid_minor - seller_net_minor;
  const rounding_minor = buyer_paid_minor - seller_net_minor - fee_minor;
  const refund_minor = escrow_minor - buyer_paid_minor;
  if (refund_minor < 0n) throw new Error(`ledger assertion failed: escrow ${escrow_minor} below buyer amount ${buyer_paid_minor}`);
  return { buyer_paid_minor, seller_net_minor, fee_minor, rounding_minor, refund_minor };
}

/** Formats minor units as a decimal string in currency units ("1234" with 2 decimals → "12.34"). */
export function formatMinor(amount_minor: bigint, minor_units: number): string {
  const negative = amount_minor < 0n;
  const digits = (negative ? -amount_minor : amount_minor).toString().padStart(minor_units + 1, '0');
  const whole = minor_units === 0 ? digits : digits.slice(0, -minor_units);
  const frac = minor_units === 0 ? '' : '.' + digits.slice(-minor_units);
  return (negative ? '-' : '') + whole + frac;
}
