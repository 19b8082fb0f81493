// Decimals at the edge, integers inside. kWh strings ↔ Wh, price strings ↔ ticks of a zone.
import { Decimal } from 'decimal.js';

const D = Decimal.clone({ precision: 60, rounding: Decimal.ROUND_HALF_EVEN, toExpNeg: -60, toExpPos: 60 });
const DECIMAL_RE = /^-?(?:0|[1-9]\d{0,17})(?:\.\d{1,18})?$/;

export class UnitError extends Error {
  constructor(
    readonly code: 'INVALID_FIELD' | 'BAD_TICK' | 'INVALID_ORDER',
    message: string,
  ) {
    super(message);
  }
}

/** "12.345" kWh → 12345 Wh. More than 3 decimals, zero or negative → error. */
export function kwhToWh(s: string, field = 'qty'): number {
  if (!DECIMAL_RE.test(s) || s.startsWith('-')) throw new UnitError('INVALID_FIELD', `${field} must be a positive decimal string of kWh, got "${s}"`);
  const wh = new D(s).mul(1000);
  if (!wh.isInteger()) throw new UnitError('INVALID_ORDER', `${field} "${s}" has more than 3 decimals (the unit is 1 Wh = 0.001 kWh)`);
  if (wh.lte(0) || wh.gt(Number.MAX_SAFE_INTEGER)) throw new UnitError('INVALID_ORDER', `${field} "${s}" is out of range`);
  return wh.toNumber();
}

/** 12345 Wh → "12.345". */
export function whToKwh(wh: number): string {
  const neg = wh < 0;
  const a = Math.abs(wh);
  const s = `${Math.floor(a / 1000)}.${String(a % 1000).padStart(3, '0')}`;
  return neg ? `-${s}` : s;
}

/** A zone's price unit: tick size as a decimal string ("0.0001") and the decimals to print. */
export interface PriceUnit {
  tick_size: string;
  decimals: number;
}

export function priceUnit(tick_size: string): PriceUnit {
  const t = new D(tick_size);
  return { tick_size: t.toString(), decimals: Math.max(0, t.decimalPlaces()) };
}

/** "0.1234" with tick 0.0001 → 1234 ticks. A price between ticks is BAD_TICK. */
export function priceToTicks(s: string, unit: PriceUnit, field = 'price'): number {
  if (!DECIMAL_RE.test(s)) throw new UnitError('INVALID_FIELD', `${field} must be a decimal string, got "${s}"`);
  const ticks = new D(s).div(unit.tick_size);
  if (!ticks.isInteger()) throw new UnitError('BAD_TICK', `${field} "${s}" is not a multiple of the zone's tick ${unit.tick_size}`);
  if (ticks.abs().gt(Number.MAX_SAFE_INTEGER)) throw new UnitError('INVALID_ORDER', `${field} "${s}" is out of range`);
  return ticks.toNumber();
}

/** 1234 ticks → "0.1234". */
export function ticksToPrice(ticks: number, unit: PriceUnit): string {
  return new D(ticks).mul(unit.tick_size).toFixed(unit.decimals);
}

/** Extra decimals printed for a VWAP beyond the tick's own (rounded half-even). */
export const VWAP_EXTRA_DECIMALS = 6;

/** Σ(price_ticks × qty_wh) / Σ qty_wh, exact in BigInt, printed as a decimal price string. */
export function vwapToPrice(notional_tick_wh: bigint, volume_wh: bigint, unit: PriceUnit): string {
  if (volume_wh === 0n) return '';
  return new D(notional_tick_wh.toString()).div(volume_wh.toString()).mul(unit.tick_size).toFixed(unit.decimals + VWAP_EXTRA_DECIMALS);
}
