import type { ReasonCode } from './constants.js';

export type BodyFormat = 'json' | 'ndjson' | 'csv' | 'msgpack';
export type EntityStatus = 'ACTIVE' | 'INACTIVE' | 'MAINTENANCE';

/** What the decode worker needs to know about the meter a batch is for. */
export interface MeterContext {
  id: number;
  serial: string;
  user_id: number;
  zone_id: number;
  timezone: string;
  status: EntityStatus;
  max_power_w: number;
  interval_minutes: number;
  registered_at_ms: number;
  /** The meter's latest stored reading, or null before its first. */
  latest: LatestReading | null;
}

export interface LatestReading {
  start_s: number;
  minutes: number;
  production_wh: number;
  consumption_wh: number;
}

export interface DeviceContext {
  id: number;
  serial: string;
  user_id: number;
  kind: string;
  status: EntityStatus;
  registered_at_ms: number;
}

export interface ValidationLimits {
  max_items: number;
  max_clock_skew_ms: number;
  max_age_days: number;
  spike_step_fraction: number;
}

export type DecodeTask =
  | { kind: 'readings'; format: BodyFormat; body: Uint8Array; meter: MeterContext; now_ms: number; limits: ValidationLimits }
  | { kind: 'telemetry'; format: BodyFormat; body: Uint8Array; device: DeviceContext; now_ms: number; limits: ValidationLimits };

/** One reading or point that was not simply stored. */
export interface ItemIssue {
  index: number;
  code: ReasonCode;
  message: string;
}

/** A gap found while validating a batch: [start_s, end_s) has no reading yet. */
export interface DetectedGap {
  start_s: number;
  end_s: number;
  missing: number;
}

/** Fatal problem with a whole body (cannot be parsed at all, or too many items). */
export interface BodyError {
  code: 'MALFORMED' | 'BATCH_TOO_LARGE';
  message: string;
}

/**
 * The decode worker's answer for a readings batch: accepted rows as typed arrays (the writer
 * encodes them for COPY, or as array literals for the careful statement).
 */
export interface DecodedReadings {
  kind: 'readings';
  /** Envelope id of a WebSocket message, echoed in the ack. */
  envelope_id: string | number | null;
  total: number;
  error: BodyError | null;
  issues: ItemIssue[];
  /** Items naming another meter's serial: resolved to UNKNOWN_METER / FORBIDDEN_METER on the main thread. */
  foreign: { index: number; serial: string }[];
  /** Later items of the batch with the same interval as an earlier one: classified after the write. */
  repeats: RowColumns;
  rows: RowColumns;
  gaps: DetectedGap[];
  /** Accepted rows older than the meter's latest reading (may fill a recorded gap). */
  late_starts_s: number[];
  min_start_s: number;
  max_start_s: number;
}

export interface RowColumns {
  n: number;
  /** original item index per row */
  index: Int32Array;
  start_s: Float64Array;
  minutes: Int16Array;
  production_wh: Float64Array;
  consumption_wh: Float64Array;
  quality: Int16Array;
}

export interface DecodedTelemetry {
  kind: 'telemetry';
  envelope_id: string | number | null;
  total: number;
  error: BodyError | null;
  issues: ItemIssue[];
  foreign: { index: number; serial: string }[];
  /** later items of the batch identical to an earlier one (idempotent repeats) */
  duplicates: number[];
  points: PointColumns;
  min_ts_ms: number;
  max_ts_ms: number;
}

export interface PointColumns {
  n: number;
  index: Int32Array;
  ts_ms: Float64Array;
  value: Float64Array;
  metric: string[];
  unit: string[];
}

export type Decoded = DecodedReadings | DecodedTelemetry;

/** Status of one item in a batch report. */
export type ItemStatus = 'ACCEPTED' | 'DUPLICATE' | 'REJECTED';

export interface ItemResult {
  index: number;
  status: ItemStatus;
  code?: ReasonCode;
  message?: string;
}

/** The answer to one batch: counts and, per item, everything that was not a plain accept. */
export interface BatchReport {
  id?: string | number | null;
  received: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** rejected readings kept aside for review (a subset of `rejected`) */
  conflicts: number;
  results: ItemResult[];
}
