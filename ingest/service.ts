// The ingest service: admission (bounded queue) → per-meter ordering → decode + validate in a
// piscina worker → group-commit write → report. Roll-ups and alerts run after durability.
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { Counter, Gauge, Histogram, Registry as MetricsRegistry } from 'prom-client';
import type { Sql } from '../schema/db.js';
import type { Logger } from '../schema/log.js';
import { AlertEngine } from './alerts.js';
import * as C from './constants.js';
import type { ReasonCode } from './constants.js';
import { Partitions } from './partitions.js';
import { Registry } from './registry.js';
import { RollupApplier, type AppliedBatch } from './rollups.js';
import type { Principal } from './tokens.js';
import type { BatchReport, BodyFormat, DecodeTask, DecodedReadings, DecodedTelemetry, ItemResult, ValidationLimits } from './types.js';
import { decodeWorkerFile } from './worker-path.js';
import { Writer } from './writer.js';

export interface IngestLimits {
  max_body_bytes: number;
  max_batch_items: number;
  max_ws_message_bytes: number;
  max_queued_items: number;
  max_queued_batches: number;
  queue_full_retry_after_s: number;
  write_batch_max_rows: number;
  writer_connections: number;
  max_clock_skew_ms: number;
  max_reading_age_days: number;
  spike_step_fraction: number;
}

export const DEFAULT_LIMITS: IngestLimits = {
  max_body_bytes: C.MAX_BODY_BYTES,
  max_batch_items: C.MAX_BATCH_ITEMS,
  max_ws_message_bytes: C.MAX_WS_MESSAGE_BYTES,
  max_queued_items: C.MAX_QUEUED_ITEMS,
  max_queued_batches: C.MAX_QUEUED_BATCHES,
  queue_full_retry_after_s: C.QUEUE_FULL_RETRY_AFTER_S,
  write_batch_max_rows: C.WRITE_BATCH_MAX_ROWS,
  writer_connections: C.WRITER_CONNECTIONS,
  max_clock_skew_ms: C.MAX_CLOCK_SKEW_MS,
  max_reading_age_days: C.MAX_READING_AGE_DAYS,
  spike_step_fraction: C.SPIKE_STEP_FRACTION,
};

export interface IngestServiceOptions {
  /** postgres.js pool; give it at least writer_connections + 2 connections. */
  sql: Sql;
  log: Logger;
  /** lowered limits (tests, small machines); unspecified ones keep DEFAULT_LIMITS */
  limits?: Partial<IngestLimits>;
  /** decode worker threads (default: cores − 1, at least 1) */
  worker_threads?: number;
  /** clock (epoch ms); tests inject one */
  now?: () => number;
  /** Prometheus registry for kwx_ingest_* metrics (default: a private one) */
  metrics?: MetricsRegistry;
  /** start the roll-up applier, partition-ahead and silence timers (default true) */
  background?: boolean;
  registry_ttl_ms?: number;
}

/** An error with a stable code, the HTTP status it maps to, and (QUEUE_FULL) when to retry. */
export class IngestError extends Error {
  constructor(
    readonly code: ReasonCode,
    message: string,
    readonly http_status: number,
    readonly retry_after_s?: number,
  ) {
    super(message);
    this.name = 'IngestError';
  }
}

export interface SubmitOptions {
  /** list ACCEPTED items in `results` too (default: only items that were not simply accepted) */
  full_report?: boolean;
}

export interface IngestStats {
  queued_items: number;
  queued_batches: number;
  readings_accepted: number;
  rollup_lag_ms_p99: number | null;
  rollup_lag_samples: number;
}

export interface IngestService {
  readonly limits: IngestLimits;
  readonly alerts: AlertEngine;
  /** Verifies a meter/device token; null when unknown. */
  authenticate(token: string): Promise<Principal | null>;
  submitReadings(principal: Principal, body: Uint8Array, format: BodyFormat, opts?: SubmitOptions): Promise<BatchReport>;
  submitTelemetry(principal: Principal, body: Uint8Array, format: BodyFormat, opts?: SubmitOptions): Promise<BatchReport>;
  /** Waits until everything admitted so far is written, rolled up and evaluated for alerts. */
  settle(): Promise<void>;
  /** Creates missing partitions from yesterday to PARTITION_AHEAD_DAYS ahead; returns how many. */
  ensurePartitionsAhead(): Promise<number>;
  /** Forgets cached meter/device/token data (after a status change or a new token). */
  invalidate(): void;
  /**
   * Forgets the cached verification of one meter's/device's tokens: a rotated or revoked token is
   * refused from the next request or stream message on. (invalidateIngestToken does it for every
   * ingest service of the process.)
   */
  invalidateToken(kind: Principal['kind'], id: number): void;
  stats(): IngestStats;
  /** Stops admitting, waits for work in flight, stops workers and timers (the sql pool is the caller's). */
  close(): Promise<void>;
}

/** Registries of the live ingest services of this process (for invalidateIngestToken). */
const liveRegistries = new Set<Registry>();

/**
 * Call after a meter's or device's token was rotated or revoked (the admin route that rotates it):
 * every ingest service of this process refuses the old token from its next request or stream
 * message on. Other processes stop accepting it within AUTH_CACHE_TTL_MS (10 s), when their cached
 * verification expires.
 */
export function invalidateIngestToken(kind: Principal['kind'], id: number): void {
  for (const r of liveRegistries) r.invalidateToken(kind, id);
}

export async function createIngestService(opts: IngestServiceOptions): Promise<IngestService> {
  const limits: IngestLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const now = opts.now ?? Date.now;
  const { sql, log } = opts;
  const metrics = createMetrics(opts.metrics ?? new MetricsRegistry());
  const registry = new Registry(sql, now, opts.registry_ttl_ms ?? C.REGISTRY_TTL_MS, C.AUTH_CACHE_TTL_MS);
  liveRegistries.add(registry);
  const partitions = new Partitions(sql);
  await partitions.load();
  await partitions.ensureAhead(now(), C.PARTITION_AHEAD_DAYS);
  const alerts = new AlertEngine(sql, log, now, C.RULES_TTL_MS);

  // roll-up lag: commit time of each readings group, until the applier folds it
  const commits = new Map<number, { at_ms: number }>();
  const lag = new LagSamples();
  const rollups = new RollupApplier(
    sql,
    C.ROLLUP_BATCH_MAX_ROWS,
    C.ROLLUP_INTERVAL_MS,
    (batches: AppliedBatch[]) => {
      const t = now();
      for (const b of batches) {
        const c = commits.get(b.batch_seq);
        if (c === undefined) continue;
        commits.delete(b.batch_seq);
        lag.add(t - c.at_ms, b.readings);
        metrics.rollupLag.observe((t - c.at_ms) / 1000);
      }
    },
    (err) => log.error('roll-up applier failed; retrying', { error: (err as Error).message }),
  );
  const writer = new Writer(sql, partitions, {
    connections: limits.writer_connections,
    max_rows: limits.write_batch_max_rows,
    now,
    onReadingsCommit: (seq, rows, at) => {
      if (rows > 0) {
        commits.set(seq, { at_ms: at });
        if (commits.size > 100_000) commits.clear();
        rollups.kick();
      }
    },
  });
  const pool = new Piscina({
    filename: decodeWorkerFile(),
    minThreads: 1,
    maxThreads: opts.worker_threads ?? Math.max(1, availableParallelism() - 1),
  });
  const validationLimits: ValidationLimits = {
    max_items: limits.max_batch_items,
    max_clock_skew_ms: limits.max_clock_skew_ms,
    max_age_days: limits.max_reading_age_days,
    spike_step_fraction: limits.spike_step_fraction,
  };

  let queuedItems = 0;
  let queuedBatches = 0;
  let readingsAccepted = 0;
  let closing = false;
  const inflight = new Set<Promise<unknown>>();
  const locks = new Map<string, Promise<void>>();
  const timers: NodeJS.Timeout[] = [];

  if (opts.background !== false) {
    rollups.start();
    const every = (ms: number, fn: () => Promise<unknown>, what: string): void => {
      const t = setInterval(() => void fn().catch((err) => log.error(`${what} failed`, { error: (err as Error).message })), ms);
      t.unref();
      timers.push(t);
    };
    every(C.PARTITION_CHECK_MS, () => partitions.ensureAhead(now(), C.PARTITION_AHEAD_DAYS), 'partition check');
    every(C.SILENCE_CHECK_MS, () => alerts.checkSilence(), 'silence check');
  }

  /** Runs fn after every earlier batch of the same meter/device has finished. */
  async function serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    locks.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (locks.get(key) === tail) locks.delete(key);
    }
  }

  function queueFull(): IngestError {
    metrics.queueFull.inc();
    return new IngestError(
      'QUEUE_FULL',
      `ingest queue is full (${queuedItems} items and ${queuedBatches} batches waiting, limits ${limits.max_queued_items} and ${limits.max_queued_batches}); nothing from this batch was stored, retry after ${limits.queue_full_retry_after_s} s`,
      503,
      limits.queue_full_retry_after_s,
    );
  }

  /** Common frame: admission, bookkeeping, error mapping. */
  async function admit<T>(bodyBytes: number, fn: () => Promise<T>): Promise<T> {
    if (closing) throw new IngestError('SHUTTING_DOWN', 'ingest is shutting down; retry on another node or later', 503, 1);
    if (bodyBytes > limits.max_body_bytes) {
      throw new IngestError('BODY_TOO_LARGE', `body is ${bodyBytes} bytes, at most ${limits.max_body_bytes} are accepted`, 413);
    }
    if (queuedBatches >= limits.max_queued_batches || queuedItems >= limits.max_queued_items) throw queueFull();
    queuedBatches++;
    metrics.queuedBatches.set(queuedBatches);
    const p = fn();
    inflight.add(p);
    try {
      return await p;
    } catch (err) {
      if (err instanceof IngestError) throw err;
      log.error('ingest batch failed', { error: (err as Error).message });
      throw new IngestError('STORAGE_UNAVAILABLE', 'the batch could not be stored (database unavailable); nothing was acknowledged, retry it', 503, 1);
    } finally {
      inflight.delete(p);
      queuedBatches--;
      metrics.queuedBatches.set(queuedBatches);
    }
  }

  /** Reserves queue room for n items (after decoding, when n is known). */
  function reserve(n: number): void {
    if (queuedItems > 0 && queuedItems + n > limits.max_queued_items) throw queueFull();
    queuedItems += n;
    metrics.queuedItems.set(queuedItems);
  }
  function unreserve(n: number): void {
    queuedItems -= n;
    metrics.queuedItems.set(queuedItems);
  }

  async function decode<T>(task: DecodeTask): Promise<T> {
    const ab = task.body.buffer;
    const transferable = task.body.byteOffset === 0 && task.body.byteLength === ab.byteLength && ab instanceof ArrayBuffer;
    return (await pool.run(task, transferable ? { transferList: [ab as ArrayBuffer] } : {})) as T;
  }

  async function submitReadings(principal: Principal, body: Uint8Array, format: BodyFormat, so: SubmitOptions = {}): Promise<BatchReport> {
    return admit(body.byteLength, () =>
      serialized(`m${principal.id}`, async () => {
        if (principal.kind !== 'meter') {
          throw new IngestError('FORBIDDEN_METER', 'this is a device token: it may send telemetry, not meter readings', 403);
        }
        const meter = await registry.meter(principal.id);
        if (meter === null) throw new IngestError('UNAUTHORIZED', 'the token names a meter that does not exist', 401);
        const d = await decode<DecodedReadings>({ kind: 'readings', format, body, meter, now_ms: now(), limits: validationLimits });
        if (d.error !== null) throw new IngestError(d.error.code, d.error.message, d.error.code === 'BATCH_TOO_LARGE' ? 413 : 400);
        const n = d.rows.n + d.repeats.n;
        reserve(n);
        try {
          const results: ItemResult[] = d.issues.map((i) => ({ index: i.index, status: 'REJECTED', code: i.code, message: i.message }));
          results.push(...(await resolveForeign(d.foreign, meter.serial, 'meter')));
          let accepted = 0;
          let duplicates = 0;
          let conflicts = 0;
          if (n > 0 || d.gaps.length > 0) {
            const started = performance.now();
            const out = await writer.writeReadings(meter, d);
            metrics.writeSeconds.observe((performance.now() - started) / 1000);
            const classify = (index: number, c: { same: boolean; stored: { production_wh: number; consumption_wh: number; interval_minutes: number; quality: number } }): void => {
              if (c.same) {
                duplicates++;
                results.push({ index, status: 'DUPLICATE', message: 'identical to the stored reading; nothing changed' });
              } else {
                conflicts++;
                results.push({
                  index,
                  status: 'REJECTED',
                  code: 'DUPLICATE_CONFLICT',
                  message: `a different reading is stored for this interval (production ${c.stored.production_wh} Wh, consumption ${c.stored.consumption_wh} Wh, quality ${c.stored.quality}); this one was kept aside for review and not applied`,
                });
              }
            };
            for (let p = 0; p < d.rows.n; p++) {
              const c = out.rows.get(p);
              if (c === undefined) {
                accepted++;
                if (so.full_report === true) results.push({ index: d.rows.index[p], status: 'ACCEPTED' });
              } else classify(d.rows.index[p], c);
            }
            for (const [p, c] of out.repeats) classify(d.repeats.index[p], c);
            let last = d.rows.n - 1;
            while (last >= 0 && out.rows.get(last)?.same === false) last--;
            if (last >= 0) {
              registry.advanceLatest(meter.id, {
                start_s: d.rows.start_s[last],
                minutes: d.rows.minutes[last],
                production_wh: d.rows.production_wh[last],
                consumption_wh: d.rows.consumption_wh[last],
              });
              alerts.onReadings(meter, d.rows);
            }
          }
          readingsAccepted += accepted;
          const rejected = results.filter((r) => r.status === 'REJECTED').length;
          count(metrics, 'readings', accepted, duplicates, results);
          results.sort((a, b) => a.index - b.index);
          return { id: d.envelope_id, received: d.total, accepted, duplicates, rejected, conflicts, results };
        } finally {
          unreserve(n);
        }
      }).catch((err) => {
        registry.invalidateMeter(principal.id);
        throw err;
      }),
    );
  }

  async function submitTelemetry(principal: Principal, body: Uint8Array, format: BodyFormat, so: SubmitOptions = {}): Promise<BatchReport> {
    return admit(body.byteLength, () =>
      serialized(`d${principal.id}`, async () => {
        if (principal.kind !== 'device') {
          throw new IngestError('FORBIDDEN_DEVICE', 'this is a meter token: it may send readings, not device telemetry', 403);
        }
        const device = await registry.device(principal.id);
        if (device === null) throw new IngestError('UNAUTHORIZED', 'the token names a device that does not exist', 401);
        const d = await decode<DecodedTelemetry>({ kind: 'telemetry', format, body, device, now_ms: now(), limits: validationLimits });
        if (d.error !== null) throw new IngestError(d.error.code, d.error.message, d.error.code === 'BATCH_TOO_LARGE' ? 413 : 400);
        const n = d.points.n;
        reserve(n);
        try {
          const results: ItemResult[] = d.issues.map((i) => ({ index: i.index, status: 'REJECTED', code: i.code, message: i.message }));
          results.push(...(await resolveForeign(d.foreign, device.serial, 'device')));
          for (const i of d.duplicates) results.push({ index: i, status: 'DUPLICATE', message: 'repeats an earlier point of this batch' });
          let accepted = 0;
          let duplicates = d.duplicates.length;
          if (n > 0) {
            const out = await writer.writeTelemetry(device, d);
            const fresh: { metric: string; ts_ms: number; value: number; unit: string }[] = [];
            for (let p = 0; p < n; p++) {
              const c = out.points.get(p);
              const index = d.points.index[p];
              if (c === undefined) {
                accepted++;
                fresh.push({ metric: d.points.metric[p], ts_ms: d.points.ts_ms[p], value: d.points.value[p], unit: d.points.unit[p] });
                if (so.full_report === true) results.push({ index, status: 'ACCEPTED' });
              } else if (c.same) {
                duplicates++;
                results.push({ index, status: 'DUPLICATE', message: 'identical to the stored point; nothing changed' });
              } else {
                results.push({
                  index,
                  status: 'REJECTED',
                  code: 'DUPLICATE_CONFLICT',
                  message: `a different value is stored for ${d.points.metric[p]} at this time (${c.stored_value} ${c.stored_unit}); not applied`,
                });
              }
            }
            alerts.onTelemetry(device, fresh);
          }
          const rejected = results.filter((r) => r.status === 'REJECTED').length;
          count(metrics, 'telemetry', accepted, duplicates, results);
          results.sort((a, b) => a.index - b.index);
          return { id: d.envelope_id, received: d.total, accepted, duplicates, rejected, conflicts: 0, results };
        } finally {
          unreserve(n);
        }
      }).catch((err) => {
        registry.invalidateDevice(principal.id);
        throw err;
      }),
    );
  }

  /** Items naming another serial: UNKNOWN_* if no such meter/device exists, else FORBIDDEN_*. */
  async function resolveForeign(foreign: { index: number; serial: string }[], own: string, kind: 'meter' | 'device'): Promise<ItemResult[]> {
    const out: ItemResult[] = [];
    const known = new Map<string, boolean>();
    for (const f of foreign) {
      let exists = known.get(f.serial);
      if (exists === undefined) {
        // bound the look-ups a single batch can cause; the rest are simply forbidden
        exists = known.size < C.MAX_FOREIGN_SERIALS ? (kind === 'meter' ? await registry.meterBySerial(f.serial) : await registry.deviceBySerial(f.serial)) !== null : true;
        known.set(f.serial, exists);
      }
      if (!exists) {
        out.push({ index: f.index, status: 'REJECTED', code: kind === 'meter' ? 'UNKNOWN_METER' : 'UNKNOWN_DEVICE', message: `no ${kind} has serial ${f.serial}` });
      } else {
        out.push({
          index: f.index,
          status: 'REJECTED',
          code: kind === 'meter' ? 'FORBIDDEN_METER' : 'FORBIDDEN_DEVICE',
          message: `this token may write only for ${kind} ${own}, not ${f.serial}`,
        });
      }
    }
    return out;
  }

  async function settle(): Promise<void> {
    while (inflight.size > 0) await Promise.allSettled([...inflight]);
    await writer.idle();
    await rollups.drain();
    await alerts.idle();
  }

  return {
    limits,
    alerts,
    authenticate: (token) => registry.authenticate(token),
    submitReadings,
    submitTelemetry,
    settle,
    ensurePartitionsAhead: () => partitions.ensureAhead(now(), C.PARTITION_AHEAD_DAYS),
    invalidate: () => registry.invalidateAll(),
    invalidateToken: (kind, id) => registry.invalidateToken(kind, id),
    stats: () => ({
      queued_items: queuedItems,
      queued_batches: queuedBatches,
      readings_accepted: readingsAccepted,
      rollup_lag_ms_p99: lag.quantile(0.99),
      rollup_lag_samples: lag.size(),
    }),
    async close() {
      closing = true;
      liveRegistries.delete(registry);
      for (const t of timers) clearInterval(t);
      await settle().catch(() => {});
      rollups.stop();
      await pool.destroy();
    },
  };
}

/** Roll-up lag samples weighted by readings (bounded; the oldest half is dropped when full). */
class LagSamples {
  private ms: number[] = [];
  private weight: number[] = [];
  add(lagMs: number, readings: number): void {
    if (this.ms.length >= 200_000) {
      this.ms = this.ms.slice(100_000);
      this.weight = this.weight.slice(100_000);
    }
    this.ms.push(lagMs);
    this.weight.push(readings);
  }
  size(): number {
    return this.ms.length;
  }
  quantile(q: number): number | null {
    if (this.ms.length === 0) return null;
    const order = this.ms.map((_, i) => i).sort((a, b) => this.ms[a] - this.ms[b]);
    const total = this.weight.reduce((a, b) => a + b, 0);
    let acc = 0;
    for (const i of order) {
      acc += this.weight[i];
      if (acc >= q * total) return this.ms[i];
    }
    return this.ms[order[order.length - 1]];
  }
}

interface Metrics {
  items: Counter<'kind' | 'result'>;
  rejections: Counter<'kind' | 'code'>;
  queueFull: Counter;
  queuedItems: Gauge;
  queuedBatches: Gauge;
  writeSeconds: Histogram;
  rollupLag: Histogram;
}

function createMetrics(register: MetricsRegistry): Metrics {
  const get = <T>(name: string, make: () => T): T => (register.getSingleMetric(name) as T | undefined) ?? make();
  return {
    items: get('kwx_ingest_items_total', () => new Counter({ name: 'kwx_ingest_items_total', help: 'Readings and telemetry points by result', labelNames: ['kind', 'result'] as const, registers: [register] })),
    rejections: get('kwx_ingest_rejections_total', () => new Counter({ name: 'kwx_ingest_rejections_total', help: 'Rejected items by reason code', labelNames: ['kind', 'code'] as const, registers: [register] })),
    queueFull: get('kwx_ingest_queue_full_total', () => new Counter({ name: 'kwx_ingest_queue_full_total', help: 'Batches refused with QUEUE_FULL', registers: [register] })),
    queuedItems: get('kwx_ingest_queued_items', () => new Gauge({ name: 'kwx_ingest_queued_items', help: 'Items admitted and not yet durable', registers: [register] })),
    queuedBatches: get('kwx_ingest_queued_batches', () => new Gauge({ name: 'kwx_ingest_queued_batches', help: 'Batches admitted and not yet answered', registers: [register] })),
    writeSeconds: get('kwx_ingest_write_seconds', () => new Histogram({ name: 'kwx_ingest_write_seconds', help: 'Wait from handing a batch to the writer until it is durable', registers: [register] })),
    rollupLag: get('kwx_ingest_rollup_lag_seconds', () => new Histogram({ name: 'kwx_ingest_rollup_lag_seconds', help: 'From a readings commit until its roll-ups are applied', registers: [register] })),
  };
}

function count(m: Metrics, kind: 'readings' | 'telemetry', accepted: number, duplicates: number, results: ItemResult[]): void {
  if (accepted > 0) m.items.inc({ kind, result: 'accepted' }, accepted);
  if (duplicates > 0) m.items.inc({ kind, result: 'duplicate' }, duplicates);
  for (const r of results) {
    if (r.status !== 'REJECTED') continue;
    m.items.inc({ kind, result: 'rejected' });
    m.rejections.inc({ kind, code: r.code ?? 'MALFORMED' });
  }
}
