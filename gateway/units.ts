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
  // Fast path (no Decimal): up to 9 integer digits, exact in doubles.
  const dot = s.indexOf('.');
  const ip = dot < 0 ? s : s.slice(0, dot);
  if (ip.length <= 9) {
    const fp = dot < 0 ? '' : s.slice(dot + 1);
    if (fp.length > 3 && !/^0*$/.test(fp.slice(3))) throw new UnitError('INVALID_ORDER', `${field} "${s}" has more than 3 decimals (the unit is 1 Wh = 0.001 kWh)`);
    const wh = Number(ip) * 1000 + (fp.length === 0 ? 0 : Number(fp.slice(0, 3).padEnd(3, '0')));
    if (wh <= 0) throw new UnitError('INVALID_ORDER', `${field} "${s}" is out of range`);
    return wh;
  }
  const wh = new D(s).mul(1000);
  if (!wh.isInteger()) throw new UnitError('INVALID_ORDER', `${field} "${s}" has more than 3 decimals (the unit is 1 Wh = 0.001 kWh)`);
  if (wh.lte(0) || wh.gt(Number.MAX_SAFE_INTEGER)) throw new UnitError('INVALID_ORDER', `${field} "${s}" is out of range`);
  return wh.toNumber();
}

/** Printed quantities (≈ 15 per order on the WebSocket path, few distinct values): Wh → kWh string. */
const KWH_PRINTED = new Map<number, string>();
const KWH_CACHE_MAX = 65_536;

/** 12345 Wh → "12.345". */
export function whToKwh(wh: number): string {
  const hit = KWH_PRINTED.get(wh);
  if (hit !== undefined) return hit;
  const neg = wh < 0;
  const a = Math.abs(wh);
  const s = `${Math.floor(a / 1000)}.${String(a % 1000).padStart(3, '0')}`;
  const out = neg ? `-${s}` : s;
  if (Number.isSafeInteger(wh)) {
    if (KWH_PRINTED.size >= KWH_CACHE_MAX) KWH_PRINTED.clear();
    KWH_PRINTED.set(wh, out);
  }
  return out;
}

/** A zone's price unit: tick size as a decimal string ("0.0001") and the decimals to print. */
export interface PriceUnit {
  tick_size: string;
  decimals: number;
}

/** tick_size = mantissa × 10^-decimals (exact), and a cache of printed prices, per unit. */
interface UnitFast {
  mantissa: number;
  decimals: number;
  printed: Map<number, string>;
}
const FAST = new WeakMap<PriceUnit, UnitFast | null>();
const PRINT_CACHE_MAX = 65_536;

function fastOf(unit: PriceUnit): UnitFast | null {
  let f = FAST.get(unit);
  if (f === undefined) {
    const t = new D(unit.tick_size);
    const m = t.mul(new D(10).pow(unit.decimals));
    f = m.isInteger() && m.gt(0) && m.lte(1e9) && unit.decimals <= 9 ? { mantissa: m.toNumber(), decimals: unit.decimals, printed: new Map() } : null;
    FAST.set(unit, f);
  }
  return f;
}

/** An integer (|n| < 2^53) printed with `decimals` decimals: 12345, 4 → "1.2345". */
function fixedPoint(n: number, decimals: number): string {
  if (decimals === 0) return String(n);
  const neg = n < 0;
  const a = String(Math.abs(n)).padStart(decimals + 1, '0');
  const out = `${a.slice(0, a.length - decimals)}.${a.slice(a.length - decimals)}`;
  return neg ? `-${out}` : out;
}

export function priceUnit(tick_size: string): PriceUnit {
  const t = new D(tick_size);
  return { tick_size: t.toString(), decimals: Math.max(0, t.decimalPlaces()) };
}

/** "0.1234" with tick 0.0001 → 1234 ticks. A price between ticks is BAD_TICK. */
export function priceToTicks(s: string, unit: PriceUnit, field = 'price'): number {
  if (!DECIMAL_RE.test(s)) throw new UnitError('INVALID_FIELD', `${field} must be a decimal string, got "${s}"`);
  const f = fastOf(unit);
  const neg = s.startsWith('-');
  const body = neg ? s.slice(1) : s;
  const dot = body.indexOf('.');
  const ip = dot < 0 ? body : body.slice(0, dot);
  if (f !== null && ip.length <= 6) {
    // Fast path (no Decimal): value × 10^decimals is an integer below 2^53 here.
    const fp = dot < 0 ? '' : body.slice(dot + 1);
    if (fp.length > f.decimals && !/^0*$/.test(fp.slice(f.decimals))) {
      throw new UnitError('BAD_TICK', `${field} "${s}" is not a multiple of the zone's tick ${unit.tick_size}`);
    }
    const scaled = Number(ip) * 10 ** f.decimals + (f.decimals === 0 ? 0 : Number(fp.slice(0, f.decimals).padEnd(f.decimals, '0')));
    if (scaled % f.mantissa !== 0) throw new UnitError('BAD_TICK', `${field} "${s}" is not a multiple of the zone's tick ${unit.tick_size}`);
    const ticks = scaled / f.mantissa;
    return neg && ticks !== 0 ? -ticks : ticks;
  }
  const ticks = new D(s).div(unit.tick_size);
  if (!ticks.isInteger()) throw new UnitError('BAD_TICK', `${field} "${s}" is not a multiple of the zone's tick ${unit.tick_size}`);
  if (ticks.abs().gt(Number.MAX_SAFE_INTEGER)) throw new UnitError('INVALID_ORDER', `${field} "${s}" is out of range`);
  return ticks.toNumber();
}

/**
 * The integer a price string shows, without its '.' (ticks × tick mantissa: "0.1234" → 1234 for
 * tick 0.0001), or null when the unit has no exact integer form. Its decimal digits are the
 * price's checksum digits (docs/protocol.md "Checksum").
 */
export function tickMantissa(unit: PriceUnit): number | null {
  return fastOf(unit)?.mantissa ?? null;
}

/** 1234 ticks → "0.1234". */
export function ticksToPrice(ticks: number, unit: PriceUnit): string {
  const f = fastOf(unit);
  if (f !== null && Number.isSafeInteger(ticks)) {
    const hit = f.printed.get(ticks);
    if (hit !== undefined) return hit;
    const n = ticks * f.mantissa;
    if (Number.isSafeInteger(n)) {
      const out = fixedPoint(n, f.decimals);
      if (f.printed.size >= PRINT_CACHE_MAX) f.printed.clear();
      f.printed.set(ticks, out);
      return out;
    }
  }
  return new D(ticks).mul(unit.tick_size).toFixed(unit.decimals);
}

/** Extra decimals printed for a VWAP beyond the tick's own (rounded half-even). */
export const VWAP_EXTRA_DECIMALS = 6;

/** Σ(price_ticks × qty_wh) / Σ qty_wh, exact in BigInt, printed as a decimal price string. */
export function vwapToPrice(notional_tick_wh: bigint, volume_wh: bigint, unit: PriceUnit): string {
  if (volume_wh === 0n) return '';
  const f = fastOf(unit);
  if (f !== null) {
    // Exact in BigInt: round(notional × mantissa × 10^extra / volume) half-even, printed with decimals + extra.
    const neg = notional_tick_wh < 0n !== volume_wh < 0n;
    const num = (notional_tick_wh < 0n ? -notional_tick_wh : notional_tick_wh) * BigInt(f.mantissa) * 10n ** BigInt(VWAP_EXTRA_DECIMALS);
    const den = volume_wh < 0n ? -volume_wh : volume_wh;
    let q = num / den;
    const r2 = (num % den) * 2n;
    if (r2 > den || (r2 === den && q % 2n === 1n)) q += 1n;
    const places = f.decimals + VWAP_EXTRA_DECIMALS;
    const digits = q.toString().padStart(places + 1, '0');
    const out = `${digits.slice(0, digits.length - places)}.${digits.slice(digits.length - places)}`;
    return neg && q !== 0n ? `-${out}` : out;
  }
  return new D(notional_tick_wh.toString()).div(volume_wh.toString()).mul(unit.tick_size).toFixed(unit.decimals + VWAP_EXTRA_DECIMALS);
}
