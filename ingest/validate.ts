// Validation (the "V" of VEE) of a decoded batch, run in the decode worker. Pure: the meter's
// context, its latest stored reading and "now" are inputs. The checks, in the order they are
// applied to each item (the first that fails is reported):
//
//   MALFORMED → FORBIDDEN/UNKNOWN (other serial) → METER_INACTIVE → BAD_INTERVAL → CLOCK_SKEW
//   → BEFORE_REGISTRATION → TOO_OLD → NEGATIVE_VALUE → ABOVE_CAPACITY, then, over the batch
//   sorted by interval: repeats of an interval (classified after the write), SPIKE, and gaps.
import { decodeBody, type RawItem } from './decode.js';
import { isKnownUnit } from './units.js';
import type { DecodeTask, DecodedReadings, DecodedTelemetry, DetectedGap, ItemIssue, MeterContext, RowColumns, ValidationLimits } from './types.js';

const DAY_MS = 86_400_000;
const QUALITY_MAX = 19;
const METRIC_RE = /^[a-z][a-z0-9_.]{0,63}$/;
const INT_RE = /^-?\d{1,15}$/;
const NUM_RE = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})$/;
/** epoch-ms accepted as a time: 2000-01-01 … 2100-01-01 */
const MIN_TIME_MS = 946_684_800_000;
const MAX_TIME_MS = 4_102_444_800_000;

export function runDecodeTask(task: DecodeTask): DecodedReadings | DecodedTelemetry {
  return task.kind === 'readings'
    ? validateReadings(task.format, task.body, task.meter, task.now_ms, task.limits)
    : validateTelemetry(task.format, task.body, task.device, task.now_ms, task.limits);
}

/** Epoch milliseconds of an ISO-8601 time with an explicit offset, of epoch-ms, or of a Date; null if none. */
export function parseTime(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= MIN_TIME_MS && v < MAX_TIME_MS ? v : null;
  if (v instanceof Date) {
    const t = v.getTime();
    return Number.isFinite(t) ? t : null;
  }
  if (typeof v !== 'string') return null;
  const fast = parseIsoMillisZ(v);
  if (fast !== null) return fast;
  if (/^\d{12,13}$/.test(v)) return parseTime(Number(v));
  const m = ISO_RE.exec(v);
  if (m === null) return null;
  if (m[8] === 'Z' && m[7] === undefined) {
    const mo = Number(m[2]);
    const d = Number(m[3]);
    const hh = Number(m[4]);
    const mi = Number(m[5]);
    const ss = m[6] === undefined ? 0 : Number(m[6]);
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 || ss > 59) return null;
    const t = Date.UTC(Number(m[1]), mo - 1, d, hh, mi, ss);
    // rejects 31 February and the like
    return new Date(t).getUTCDate() === d ? t : null;
  }
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : null;
}

/**
 * The common case of parseTime without a regular expression: exactly "YYYY-MM-DDTHH:MM:SS.sssZ"
 * (what Date.prototype.toISOString writes) naming a valid date and time, year 1000 or later.
 * Anything else (other shapes, 31 February, 24:00, …) returns null and takes the general path, so
 * the result is always the one Date.parse gives.
 */
function parseIsoMillisZ(v: string): number | null {
  if (v.length !== 24 || v.charCodeAt(23) !== 90 /* Z */) return null;
  if (v.charCodeAt(4) !== 45 || v.charCodeAt(7) !== 45 || v.charCodeAt(10) !== 84 || v.charCodeAt(13) !== 58 || v.charCodeAt(16) !== 58 || v.charCodeAt(19) !== 46) return null;
  const dd = (i: number): number => {
    const a = v.charCodeAt(i) - 48;
    const b = v.charCodeAt(i + 1) - 48;
    return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
  };
  const y1 = dd(0);
  const y2 = dd(2);
  const mo = dd(5);
  const d = dd(8);
  const hh = dd(11);
  const mi = dd(14);
  const ss = dd(17);
  const m1 = dd(20);
  const m3 = v.charCodeAt(22) - 48;
  if (y1 < 10 || y2 < 0 || m1 < 0 || m3 < 0 || m3 > 9) return null;
  const year = y1 * 100 + y2;
  if (mo < 1 || mo > 12 || d < 1 || hh < 0 || hh > 23 || mi < 0 || mi > 59 || ss < 0 || ss > 59) return null;
  const days = mo === 2 ? ((year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28) : mo === 4 || mo === 6 || mo === 9 || mo === 11 ? 30 : 31;
  if (d > days) return null;
  return Date.UTC(year, mo - 1, d, hh, mi, ss, m1 * 10 + m3);
}

function parseInteger(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : null;
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : null;
  if (typeof v === 'string' && INT_RE.test(v)) return Number(v);
  return null;
}

function parseNumber(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && NUM_RE.test(v)) {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

interface Candidate {
  index: number;
  start_s: number;
  minutes: number;
  production_wh: number;
  consumption_wh: number;
  quality: number;
}

/** Capacity of a meter for one interval, in Wh (integer maths: max_power_w × minutes / 60). */
export function capacityWh(maxPowerW: number, minutes: number): number {
  return Math.floor((maxPowerW * minutes) / 60);
}

export function validateReadings(format: DecodeTask['format'], body: Uint8Array, meter: MeterContext, nowMs: number, limits: ValidationLimits): DecodedReadings {
  const raw = decodeBody(format, body, 'readings', limits.max_items);
  const out: DecodedReadings = {
    kind: 'readings',
    envelope_id: raw.envelope_id,
    total: raw.items.length,
    error: raw.error,
    issues: [],
    foreign: [],
    repeats: emptyColumns(),
    rows: emptyColumns(),
    gaps: [],
    late_starts_s: [],
    min_start_s: 0,
    max_start_s: 0,
  };
  if (raw.error !== null) return out;
  const candidates: Candidate[] = [];
  const registeredFloorMs = (m: number): number => Math.floor(meter.registered_at_ms / (m * 60_000)) * m * 60_000;
  const oldestMs = nowMs - limits.max_age_days * DAY_MS;
  for (let i = 0; i < raw.items.length; i++) {
    const r = checkReading(raw.items[i], i, meter, nowMs, limits, registeredFloorMs, oldestMs);
    if ('code' in r) out.issues.push(r);
    else if ('serial' in r) out.foreign.push(r);
    else candidates.push(r);
  }
  candidates.sort((a, b) => a.start_s - b.start_s || a.index - b.index);
  const accepted: Candidate[] = [];
  const repeats: Candidate[] = [];
  const latest = meter.latest;
  const latestEnd = latest === null ? null : latest.start_s + latest.minutes * 60;
  let cursorEnd = latestEnd;
  let prev: { start_s: number; minutes: number; production_wh: number; consumption_wh: number } | null = latest;
  let lastStart = -1;
  for (const c of candidates) {
    if (c.start_s === lastStart) {
      repeats.push(c);
      continue;
    }
    if (prev !== null && prev.start_s + prev.minutes * 60 === c.start_s) {
      const spike = spikeMessage(prev, c, meter.max_power_w, limits.spike_step_fraction);
      if (spike !== null) {
        out.issues.push({ index: c.index, code: 'SPIKE', message: spike });
        continue;
      }
    }
    if (latestEnd !== null && c.start_s < latestEnd) out.late_starts_s.push(c.start_s);
    if (cursorEnd !== null && c.start_s > cursorEnd) out.gaps.push(gap(cursorEnd, c.start_s, c.minutes));
    accepted.push(c);
    lastStart = c.start_s;
    prev = c;
    const end = c.start_s + c.minutes * 60;
    if (cursorEnd === null || end > cursorEnd) cursorEnd = end;
  }
  out.rows = toColumns(accepted);
  out.repeats = toColumns(repeats);
  if (accepted.length > 0) {
    out.min_start_s = accepted[0].start_s;
    out.max_start_s = accepted[accepted.length - 1].start_s;
  }
  out.issues.sort((a, b) => a.index - b.index);
  return out;
}

function gap(startS: number, endS: number, minutes: number): DetectedGap {
  return { start_s: startS, end_s: endS, missing: Math.floor((endS - startS) / (minutes * 60)) };
}

function spikeMessage(
  prev: { production_wh: number; consumption_wh: number },
  c: Candidate,
  maxPowerW: number,
  fraction: number,
): string | null {
  const step = fraction * capacityWh(maxPowerW, c.minutes);
  if (c.production_wh - prev.production_wh > step) {
    return `production jumped from ${prev.production_wh} Wh to ${c.production_wh} Wh in one interval, more than ${Math.round(fraction * 100)}% of the meter's ${capacityWh(maxPowerW, c.minutes)} Wh capacity`;
  }
  if (c.consumption_wh - prev.consumption_wh > step) {
    return `consumption jumped from ${prev.consumption_wh} Wh to ${c.consumption_wh} Wh in one interval, more than ${Math.round(fraction * 100)}% of the meter's ${capacityWh(maxPowerW, c.minutes)} Wh capacity`;
  }
  return null;
}

function checkReading(
  item: RawItem,
  index: number,
  meter: MeterContext,
  nowMs: number,
  limits: ValidationLimits,
  registeredFloorMs: (minutes: number) => number,
  oldestMs: number,
): Candidate | ItemIssue | { index: number; serial: string } {
  const bad = (message: string): ItemIssue => ({ index, code: 'MALFORMED', message });
  if ('__malformed' in item) return bad(String(item.__malformed));
  const serial = item.meter_serial;
  if (serial !== undefined && typeof serial !== 'string') return bad('meter_serial must be a string');
  if (serial !== undefined && serial !== meter.serial) return { index, serial };
  const startMs = parseTime(item.interval_start);
  if (startMs === null) return bad('interval_start must be an ISO-8601 time with an offset (e.g. 2025-01-01T00:15:00Z) or epoch milliseconds');
  const minutes = parseInteger(item.interval_minutes);
  if (minutes === null || minutes <= 0 || minutes > 1440) return bad('interval_minutes must be a positive integer');
  const prod = parseInteger(item.production_wh);
  if (prod === null) return bad('production_wh must be an integer number of Wh');
  const cons = parseInteger(item.consumption_wh);
  if (cons === null) return bad('consumption_wh must be an integer number of Wh');
  const quality = item.quality === undefined || item.quality === null ? 0 : parseInteger(item.quality);
  if (quality === null || quality < 0 || quality > QUALITY_MAX) return bad(`quality must be an ESPI quality code from 0 to ${QUALITY_MAX}`);
  if (meter.status !== 'ACTIVE') return { index, code: 'METER_INACTIVE', message: `meter ${meter.serial} is ${meter.status}; its readings are not accepted` };
  if (minutes !== meter.interval_minutes) {
    return { index, code: 'BAD_INTERVAL', message: `interval_minutes is ${minutes}, meter ${meter.serial} is registered for ${meter.interval_minutes}-minute intervals` };
  }
  if (startMs % (minutes * 60_000) !== 0) {
    return { index, code: 'BAD_INTERVAL', message: `interval_start ${new Date(startMs).toISOString()} is not on a ${minutes}-minute boundary` };
  }
  const endMs = startMs + minutes * 60_000;
  if (endMs > nowMs + limits.max_clock_skew_ms) {
    return { index, code: 'CLOCK_SKEW', message: `interval ends at ${new Date(endMs).toISOString()}, more than ${limits.max_clock_skew_ms / 1000} s after the server's time ${new Date(nowMs).toISOString()}` };
  }
  if (startMs < registeredFloorMs(minutes)) {
    return { index, code: 'BEFORE_REGISTRATION', message: `interval starts at ${new Date(startMs).toISOString()}, before meter ${meter.serial} was registered (${new Date(meter.registered_at_ms).toISOString()})` };
  }
  if (startMs < oldestMs) {
    return { index, code: 'TOO_OLD', message: `interval starts more than ${limits.max_age_days} days ago` };
  }
  if (prod < 0 || cons < 0) {
    return { index, code: 'NEGATIVE_VALUE', message: `${prod < 0 ? `production_wh is ${prod}` : `consumption_wh is ${cons}`}; registers never run backwards (export is production_wh)` };
  }
  const cap = capacityWh(meter.max_power_w, minutes);
  if (prod > cap || cons > cap) {
    return {
      index,
      code: 'ABOVE_CAPACITY',
      message: `${prod > cap ? `production_wh ${prod}` : `consumption_wh ${cons}`} Wh is more than meter ${meter.serial} can register in ${minutes} minutes (${meter.max_power_w} W × ${minutes} min = ${cap} Wh)`,
    };
  }
  return { index, start_s: startMs / 1000, minutes, production_wh: prod, consumption_wh: cons, quality };
}

function emptyColumns(): RowColumns {
  return toColumns([]);
}

function toColumns(rows: Candidate[]): RowColumns {
  const n = rows.length;
  const c: RowColumns = {
    n,
    index: new Int32Array(n),
    start_s: new Float64Array(n),
    minutes: new Int16Array(n),
    production_wh: new Float64Array(n),
    consumption_wh: new Float64Array(n),
    quality: new Int16Array(n),
  };
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    c.index[i] = r.index;
    c.start_s[i] = r.start_s;
    c.minutes[i] = r.minutes;
    c.production_wh[i] = r.production_wh;
    c.consumption_wh[i] = r.consumption_wh;
    c.quality[i] = r.quality;
  }

  return c;
}

export function validateTelemetry(
  format: DecodeTask['format'],
  body: Uint8Array,
  device: { serial: string; status: string; registered_at_ms: number },
  nowMs: number,
  limits: ValidationLimits,
): DecodedTelemetry {
  const raw = decodeBody(format, body, 'telemetry', limits.max_items);
  const out: DecodedTelemetry = {
    kind: 'telemetry',
    envelope_id: raw.envelope_id,
    total: raw.items.length,
    error: raw.error,
    issues: [],
    foreign: [],
    duplicates: [],
    points: { n: 0, index: new Int32Array(0), ts_ms: new Float64Array(0), value: new Float64Array(0), metric: [], unit: [] },
    min_ts_ms: 0,
    max_ts_ms: 0,
  };
  if (raw.error !== null) return out;
  const oldestMs = nowMs - limits.max_age_days * DAY_MS;
  const seen = new Map<string, { value: number; unit: string }>();
  const idx: number[] = [];
  const ts: number[] = [];
  const val: number[] = [];
  const metric: string[] = [];
  const unit: string[] = [];
  for (let i = 0; i < raw.items.length; i++) {
    const item = raw.items[i];
    const issue = (code: ItemIssue['code'], message: string): void => {
      out.issues.push({ index: i, code, message });
    };
    if ('__malformed' in item) {
      issue('MALFORMED', String(item.__malformed));
      continue;
    }
    const serial = item.device_serial;
    if (serial !== undefined && typeof serial !== 'string') {
      issue('MALFORMED', 'device_serial must be a string');
      continue;
    }
    if (serial !== undefined && serial !== device.serial) {
      out.foreign.push({ index: i, serial });
      continue;
    }
    const m = item.metric;
    if (typeof m !== 'string' || !METRIC_RE.test(m)) {
      issue('MALFORMED', 'metric must be lower-case letters, digits, "_" or "." (e.g. ac_power), at most 64 characters');
      continue;
    }
    const v = parseNumber(item.value);
    if (v === null) {
      issue('MALFORMED', 'value must be a finite number');
      continue;
    }
    const u = item.unit;
    if (typeof u !== 'string') {
      issue('MALFORMED', 'unit must be a string');
      continue;
    }
    const t = parseTime(item.time);
    if (t === null) {
      issue('MALFORMED', 'time must be an ISO-8601 time with an offset or epoch milliseconds');
      continue;
    }
    if (!isKnownUnit(u)) {
      issue('BAD_UNIT', `unit "${u}" is not one kwx knows (W, kW, Wh, kWh, V, A, Hz, %, degC, …)`);
      continue;
    }
    if (device.status !== 'ACTIVE') {
      issue('DEVICE_INACTIVE', `device ${device.serial} is ${device.status}; its telemetry is not accepted`);
      continue;
    }
    if (t > nowMs + limits.max_clock_skew_ms) {
      issue('CLOCK_SKEW', `time ${new Date(t).toISOString()} is more than ${limits.max_clock_skew_ms / 1000} s after the server's time ${new Date(nowMs).toISOString()}`);
      continue;
    }
    if (t < device.registered_at_ms) {
      issue('BEFORE_REGISTRATION', `time ${new Date(t).toISOString()} is before device ${device.serial} was registered (${new Date(device.registered_at_ms).toISOString()})`);
      continue;
    }
    if (t < oldestMs) {
      issue('TOO_OLD', `time is more than ${limits.max_age_days} days ago`);
      continue;
    }
    const key = `${m}\u0000${t}`;
    const first = seen.get(key);
    if (first !== undefined) {
      // a repeat inside the batch: identical → a duplicate of the first, different → a conflict
      if (first.value !== v || first.unit !== u) issue('DUPLICATE_CONFLICT', `${m} at ${new Date(t).toISOString()} appears twice in the batch with different values`);
      else out.duplicates.push(i);
      continue;
    }
    seen.set(key, { value: v, unit: u });
    idx.push(i);
    ts.push(t);
    val.push(v);
    metric.push(m);
    unit.push(u);
  }
  out.points = { n: idx.length, index: Int32Array.from(idx), ts_ms: Float64Array.from(ts), value: Float64Array.from(val), metric, unit };
  if (ts.length > 0) {
    out.min_ts_ms = ts.reduce((a, b) => (b < a ? b : a));
    out.max_ts_ms = ts.reduce((a, b) => (b > a ? b : a));
  }
  out.issues.sort((a, b) => a.index - b.index);
  return out;
}
