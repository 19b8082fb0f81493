// Limits and reason codes of the ingest worker. Every limit is named here, has a test at its
// edge, and can be lowered (not raised past these defaults without thought) per service.

/** Largest HTTP body accepted on /ingest/* (bytes); larger → 413 BODY_TOO_LARGE. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** Most readings or telemetry points in one HTTP batch or WebSocket message; more → 413 BATCH_TOO_LARGE. */
export const MAX_BATCH_ITEMS = 20_000;
/** Largest WebSocket message (bytes). */
export const MAX_WS_MESSAGE_BYTES = 1024 * 1024;
/** Readings + points admitted but not yet durable; beyond it → 503 / slow_down (QUEUE_FULL). */
export const MAX_QUEUED_ITEMS = 200_000;
/** Batches (HTTP requests + WS messages) admitted but not yet answered. */
export const MAX_QUEUED_BATCHES = 1_024;
/** Retry-After sent with QUEUE_FULL (seconds). */
export const QUEUE_FULL_RETRY_AFTER_S = 1;
/**
 * Most rows in one write transaction (group commit). 20,000 was tried: PostgreSQL CPU per million
 * readings fell in the direct-submit harness, but the HTTP bench (8 requests of 2,000 in flight, so
 * at most 16,000 rows queued) then rarely had a second write in flight and lost 20-30% readings/s.
 */
export const WRITE_BATCH_MAX_ROWS = 10_000;
/** Write transactions in flight at once (one connection each). */
export const WRITER_CONNECTIONS = 2;
/** Outbox buckets (array elements, or rows of the earlier shapes) folded per applier transaction. */
export const ROLLUP_BATCH_MAX_ROWS = 50_000;
/** Roll-up applier: at most one run per this many ms (and a run at least this often when idle). */
export const ROLLUP_INTERVAL_MS = 500;
/** A reading whose interval ends later than now + this is refused (CLOCK_SKEW). */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;
/** Readings older than this are refused (TOO_OLD): bounds back-fill and partition creation. */
export const MAX_READING_AGE_DAYS = 400;
/**
 * SPIKE: a reading that rises above the previous consecutive interval of the same register by
 * more than this fraction of the meter's capacity for one interval. Real solar ramps and load
 * steps rise over several intervals or stay below it; a jump from idle to ~full scale in one
 * interval is what a corrupted register looks like.
 */
export const SPIKE_STEP_FRACTION = 0.9;
/** Days of partitions created ahead of now; the service re-checks every PARTITION_CHECK_MS. */
export const PARTITION_AHEAD_DAYS = 7;
export const PARTITION_CHECK_MS = 60 * 60_000;
/** How long a verified token and a meter/device context are reused before re-reading the database. */
export const AUTH_CACHE_TTL_MS = 10_000;
export const REGISTRY_TTL_MS = 10_000;
/** How often silent-meter (no_data) alert rules are evaluated (ms). */
export const SILENCE_CHECK_MS = 60_000;
/** Alert rules are re-read at least this often (ms); createRule refreshes at once. */
export const RULES_TTL_MS = 10_000;
/** Maximum distinct serials one batch may name besides its own (bounds registry look-ups). */
export const MAX_FOREIGN_SERIALS = 64;

export const REASON_CODES = [
  // per reading / point
  'MALFORMED',
  'UNKNOWN_METER',
  'UNKNOWN_DEVICE',
  'METER_INACTIVE',
  'DEVICE_INACTIVE',
  'FORBIDDEN_METER',
  'FORBIDDEN_DEVICE',
  'BAD_INTERVAL',
  'CLOCK_SKEW',
  'BEFORE_REGISTRATION',
  'TOO_OLD',
  'NEGATIVE_VALUE',
  'ABOVE_CAPACITY',
  'SPIKE',
  'BAD_UNIT',
  'DUPLICATE_CONFLICT',
  // per request
  'UNAUTHORIZED',
  'UNSUPPORTED_MEDIA_TYPE',
  'BODY_TOO_LARGE',
  'BATCH_TOO_LARGE',
  'QUEUE_FULL',
  'STORAGE_UNAVAILABLE',
  'SHUTTING_DOWN',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];
