// The group-commit writer: validated batches from many meters and requests are written together,
// one statement per group (at most WRITE_BATCH_MAX_ROWS rows), and each batch's promise resolves
// only after that statement has committed, so an acknowledged reading is durable.
//
// One statement does everything a group needs and is atomic by itself (no BEGIN/COMMIT round
// trips): insert the readings (ON CONFLICT DO NOTHING keeps the stored row: a resend never
// overwrites), the meter's hour/day/month roll-ups, the zone/community roll-up outbox,
// meter_latest, new gaps and gap fills. Rows that were not
// inserted come back by ordinal and are classified by a second statement (identical → duplicate;
// different → conflict kept aside). If that second statement fails the client is not acked and
// its resend classifies them again, so nothing is lost.
import type { Sql } from '../schema/db.js';
import type { Partitions } from './partitions.js';
import type { DecodedReadings, DecodedTelemetry, DeviceContext, MeterContext, RowColumns } from './types.js';

export interface StoredReading {
  interval_minutes: number;
  production_wh: number;
  consumption_wh: number;
  quality: number;
}

/** What happened to the rows of one batch that were not simply inserted. */
export interface ReadingsOutcome {
  /** row position in `rows` → stored value it matched (same) or contradicted (!same) */
  rows: Map<number, { same: boolean; stored: StoredReading }>;
  repeats: Map<number, { same: boolean; stored: StoredReading }>;
  batch_seq: number;
}

export interface TelemetryOutcome {
  points: Map<number, { same: boolean; stored_value: number; stored_unit: string }>;
}

interface ReadingsJob {
  kind: 'readings';
  meter: MeterContext;
  d: DecodedReadings;
  rows: number;
  resolve: (o: ReadingsOutcome) => void;
  reject: (e: unknown) => void;
}

interface TelemetryJob {
  kind: 'telemetry';
  device: DeviceContext;
  d: DecodedTelemetry;
  rows: number;
  resolve: (o: TelemetryOutcome) => void;
  reject: (e: unknown) => void;
}

export interface WriterOptions {
  connections: number;
  max_rows: number;
  now: () => number;
  /** called after a readings group committed: its sequence number, rows inserted and commit time */
  onReadingsCommit?: (seq: number, rows: number, commitMs: number) => void;
}

export class Writer {
  private readonly readingsQ: ReadingsJob[] = [];
  private readonly telemetryQ: TelemetryJob[] = [];
  private inflight = 0;
  private seq = 0;
  private readonly buckets = new BucketCache();
  private preferTelemetry = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly sql: Sql,
    private readonly partitions: Partitions,
    private readonly opts: WriterOptions,
  ) {}

  writeReadings(meter: MeterContext, d: DecodedReadings): Promise<ReadingsOutcome> {
    return new Promise((resolve, reject) => {
      this.readingsQ.push({ kind: 'readings', meter, d, rows: Math.max(1, d.rows.n + d.repeats.n), resolve, reject });
      this.pump();
    });
  }

  writeTelemetry(device: DeviceContext, d: DecodedTelemetry): Promise<TelemetryOutcome> {
    return new Promise((resolve, reject) => {
      this.telemetryQ.push({ kind: 'telemetry', device, d, rows: Math.max(1, d.points.n), resolve, reject });
      this.pump();
    });
  }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0 && this.readingsQ.length === 0 && this.telemetryQ.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (this.inflight < this.opts.connections && (this.readingsQ.length > 0 || this.telemetryQ.length > 0)) {
      // group commit: while a write is in flight, start another only for a group at least half
      // full; smaller ones wait for the running write to finish and grow meanwhile (fewer, larger
      // groups cost PostgreSQL less per row than many small ones)
      if (this.inflight > 0 && queuedRows(this.readingsQ) < this.opts.max_rows / 2 && queuedRows(this.telemetryQ) < this.opts.max_rows / 2) return;
      const useTelemetry = this.telemetryQ.length > 0 && (this.readingsQ.length === 0 || this.preferTelemetry);
      this.preferTelemetry = !useTelemetry;
      this.inflight++;
      const run = useTelemetry ? this.flushTelemetry(take(this.telemetryQ, this.opts.max_rows)) : this.flushReadings(take(this.readingsQ, this.opts.max_rows));
      void run.finally(() => {
        this.inflight--;
        this.pump();
        if (this.inflight === 0 && this.readingsQ.length === 0 && this.telemetryQ.length === 0) {
          const w = this.idleWaiters;
          this.idleWaiters = [];
          for (const f of w) f();
        }
      });
    }
  }

  /**
   * Runs a write; if it found no partition for a row (a partition was dropped after this process
   * learnt of it, e.g. by a retention job), re-reads the partitions, creates the missing ones and
   * retries once. The statement is atomic, so the failed attempt left nothing behind.
   */
  private async withPartitionRetry<T>(table: 'meter_readings' | 'device_telemetry', minMs: number, maxMs: number, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if ((err as { code?: string }).code !== '23514' || !/no partition/.test((err as Error).message)) throw err;
      this.partitions.reset();
      await this.partitions.load();
      await this.partitions.ensure(table, minMs, maxMs);
      return write();
    }
  }

  private async flushReadings(jobs: ReadingsJob[]): Promise<void> {
    try {
      const seq = ++this.seq;
      const outcomes = jobs.map(() => ({ rows: new Map(), repeats: new Map(), batch_seq: seq }) as ReadingsOutcome);
      let minMs = Infinity;
      let maxMs = -Infinity;
      for (const j of jobs) {
        if (j.d.rows.n === 0) continue;
        minMs = Math.min(minMs, j.d.min_start_s * 1000);
        maxMs = Math.max(maxMs, j.d.max_start_s * 1000);
      }
      if (minMs <= maxMs) await this.partitions.ensure('meter_readings', minMs, maxMs);
      // unique per group (microseconds from seq), so that rows this group inserted can be told apart
      const nowMs = this.opts.now();
      const receivedAt = groupInstant(nowMs, seq);
      const receivedUs = nowMs * 1000 + (seq % 1000);
      const notInserted = await this.withPartitionRetry('meter_readings', minMs, maxMs, () => this.insertReadings(jobs, seq, receivedAt, receivedUs));
      // ordinal (1-based, over the concatenated rows) → job and row position
      const toClassify: { job: number; pos: number; repeat: boolean }[] = [];
      if (notInserted.length > 0) {
        const starts: number[] = [];
        let acc = 0;
        for (const j of jobs) {
          starts.push(acc);
          acc += j.d.rows.n;
        }
        for (const ord of notInserted) {
          let k = upperBound(starts, ord - 1) - 1;
          while (jobs[k].d.rows.n === 0) k--;
          toClassify.push({ job: k, pos: ord - 1 - starts[k], repeat: false });
        }
      }
      jobs.forEach((j, k) => {
        for (let p = 0; p < j.d.repeats.n; p++) toClassify.push({ job: k, pos: p, repeat: true });
      });
      if (toClassify.length > 0) await this.classifyReadings(jobs, toClassify, outcomes, receivedAt);
      const inserted = jobs.reduce((a, j) => a + j.d.rows.n, 0) - notInserted.length;
      this.opts.onReadingsCommit?.(seq, inserted, this.opts.now());
      jobs.forEach((j, k) => j.resolve(outcomes[k]));
    } catch (err) {
      for (const j of jobs) j.reject(err);
    }
  }

  private async insertReadings(jobs: ReadingsJob[], seq: number, receivedAt: string, receivedUs: number): Promise<number[]> {
    const meterIds: string[] = [];
    const cols = { start_s: [] as string[], minutes: [] as string[], production_wh: [] as string[], consumption_wh: [] as string[], quality: [] as string[] };
    const tzIds: number[] = [];
    const tzNames: string[] = [];
    const zoneIds: number[] = [];
    const userIds: number[] = [];
    const gaps = { meter: [] as number[], s: [] as number[], e: [] as number[], m: [] as number[], n: [] as number[] };
    const late = { meter: [] as number[], s: [] as number[] };
    // each job's newest row, for meter_latest (a meter is in at most one job of a group)
    const last = { meter: [] as number[], s: [] as number[], m: [] as number[], p: [] as number[], c: [] as number[], q: [] as number[] };
    let total = 0;
    const seenMeters = new Set<number>();
    for (const j of jobs) {
      const id = j.meter.id;
      if (!seenMeters.has(id)) {
        seenMeters.add(id);
        tzIds.push(id);
        tzNames.push(j.meter.timezone);
        zoneIds.push(j.meter.zone_id);
        userIds.push(j.meter.user_id);
      }
      const r = j.d.rows;
      if (r.n > 0) {
        total += r.n;
        const k = r.n - 1;
        last.meter.push(id);
        last.s.push(r.start_s[k]);
        last.m.push(r.minutes[k]);
        last.p.push(r.production_wh[k]);
        last.c.push(r.consumption_wh[k]);
        last.q.push(r.quality[k]);
      }
      for (const g of j.d.gaps) {
        gaps.meter.push(id);
        gaps.s.push(g.start_s);
        gaps.e.push(g.end_s);
        gaps.m.push(j.meter.interval_minutes);
        gaps.n.push(g.missing);
      }
      for (const s of j.d.late_starts_s) {
        late.meter.push(id);
        late.s.push(s);
      }
    }
    const lit = (parts: string[]): string => `{${parts.join(',')}}`;
    const nums = (a: number[]): string => `{${a.join(',')}}`;
    const params = [
        '', '', '', '', '', '', // the rows' array literals: built below, only for the careful statement
        receivedAt,
        nums(tzIds),
        textArray(tzNames),
        seq,
        nums(gaps.meter),
        nums(gaps.s),
        nums(gaps.e),
        nums(gaps.m),
        nums(gaps.n),
        nums(late.meter),
        nums(late.s),
        nums(zoneIds),
        nums(userIds),
        nums(last.meter),
        nums(last.s),
        nums(last.m),
        nums(last.p),
        nums(last.c),
        nums(last.q),
      ] as never[];
    if (jobs.every((j) => j.d.late_starts_s.length === 0 && j.d.repeats.n === 0)) {
      // the fast path: no row of the group can be a resend (as far as this process knows)
      if (await this.insertFresh(jobs, params, seq, receivedAt, receivedUs)) return [];
    }
    for (const j of jobs) {
      const r = j.d.rows;
      if (r.n === 0) continue;
      meterIds.push(`${j.meter.id},`.repeat(r.n).slice(0, -1));
      cols.start_s.push(r.start_s.join(','));
      cols.minutes.push(r.minutes.join(','));
      cols.production_wh.push(r.production_wh.join(','));
      cols.consumption_wh.push(r.consumption_wh.join(','));
      cols.quality.push(r.quality.join(','));
    }
    const p = params as unknown[];
    p[0] = lit(meterIds);
    p[1] = lit(cols.start_s);
    p[2] = lit(cols.minutes);
    p[3] = lit(cols.production_wh);
    p[4] = lit(cols.consumption_wh);
    p[5] = lit(cols.quality);
    const [{ inserted }] = await this.sql.unsafe<{ inserted: number }[]>(INSERT_READINGS, params, { prepare: true });
    if (inserted === total) return [];
    // some rows were already stored (resends): find them by their received_at, which is not ours
    const rows = await this.sql.unsafe<{ ord: number }[]>(FIND_NOT_INSERTED, [lit(meterIds), lit(cols.start_s), receivedAt] as never[], { prepare: true });
    return rows.map((r) => r.ord);
  }

  /**
   * The fast path for a group in which no row can be a resend (no row older than its meter's
   * latest, no repeat): a plain INSERT (no speculative insertion, no RETURNING), and the roll-up
   * work done here rather than per row in PostgreSQL: rows are summed per meter and local
   * hour/day/month and per zone (and community member) and local hour, so the statement upserts one
   * row per bucket instead of touching a bucket per reading. Bucket starts come from PostgreSQL's
   * own date_trunc (cached per time zone and interval start), so they are exactly the buckets the
   * per-row statement computes. A unique violation (a row stored behind this process's back)
   * rolls the whole statement back; returns false and the caller runs the careful statement.
   */
  private async insertFresh(jobs: ReadingsJob[], params: never[], seq: number, receivedAt: string, receivedUs: number): Promise<boolean> {
    await this.buckets.ensure(this.sql, jobs);
    const agg = aggregateRollups(jobs, this.buckets);
    const nums = (a: number[]): string => `{${a.join(',')}}`;
    const p = params as unknown[];
    const rest = [
      receivedAt,
      nums(agg.meter.id), nums(agg.meter.period), nums(agg.meter.bucket), nums(agg.meter.p), nums(agg.meter.c), nums(agg.meter.n),
      nums(agg.zone.zone), nums(agg.zone.user), nums(agg.zone.lo), nums(agg.zone.hi), nums(agg.zone.total),
      nums(agg.zone.hour), nums(agg.zone.p), nums(agg.zone.c), nums(agg.zone.n), seq,
      p[19], p[20], p[21], p[22], p[23], p[24],
      p[10], p[11], p[12], p[13], p[14],
    ] as never[];
    const copies = [{ statement: COPY_READINGS, data: encodeReadingsCopy(jobs, receivedUs) }];
    if (agg.fresh.id.length > 0) copies.push({ statement: COPY_METER_ROLLUPS, data: encodeMeterRollupsCopy(agg.fresh) });
    return this.copyTransaction(copies, rest);
  }

  /**
   * BEGIN, a binary COPY of the readings (and one of the meter buckets that cannot exist yet), the
   * roll-up statement and COMMIT on a reserved connection; after each COPY's CopyInResponse the
   * rest is sent before any answer is read (so nothing is ever sent after a failure came back: no
   * sql.begin(), whose ROLLBACK on a just-dropped connection crashes the process,
   * porsager/postgres#1208). If a COPY fails (a unique violation: a row stored behind this
   * process's back), the statement behind it fails as "transaction aborted" and the transaction
   * ends as a rollback: nothing was written, returns false. A dropped connection throws (the
   * connection is not handed back: the pool replaces it).
   */
  private async copyTransaction(copies: { statement: string; data: Buffer }[], rest: never[]): Promise<boolean> {
    const tx = await this.sql.reserve();
    let dead: unknown = null;
    const watch = <T>(q: Promise<T>): Promise<T> => {
      q.catch((err: unknown) => {
        if (dead === null && isConnectionError(err)) dead = err;
      });
      return q;
    };
    let sentAll = false;
    try {
      const begin = watch(tx`begin` as unknown as Promise<unknown>);
      for (const copy of copies) {
        // a COPY behind a failed one fails at once (the transaction is aborted): caught below
        const stream = await watch(tx.unsafe(copy.statement).writable());
        let streamError: unknown = null;
        stream.on('error', (err: unknown) => {
          streamError ??= err;
        });
        // postgres.js 3.4.9 destroys a finished COPY stream (autoDestroy) by sending CopyFail
        // ("null") and clearing the connection's current stream; PostgreSQL ignores a CopyFail
        // outside COPY, but one that arrives during the next COPY of this transaction aborts it.
        // A stream destroyed without an error has nothing to report: only call back.
        const w = stream as unknown as { _destroy?: (err: Error | null, cb: (err?: Error | null) => void) => void };
        const destroy = w._destroy;
        if (typeof destroy === 'function') {
          w._destroy = (err, cb) => (err === null || err === undefined ? cb(null) : destroy.call(stream, err, cb));
        }
        // postgres.js reports a COPY failure only to a stream that is still open, so the COPY's
        // outcome is read from the statement queued behind it (it fails if the COPY did)
        const ended = new Promise<void>((resolve) => {
          stream.once('error', () => resolve());
          stream.once('close', () => resolve());
          const s = stream as unknown as { _final?: (cb: (err?: Error | null) => void) => void };
          const final = s._final;
          if (typeof final !== 'function') return resolve();
          s._final = (cb) => {
            final.call(stream, cb);
            resolve();
          };
        });
        stream.end(copy.data);
        await ended;
        if (streamError !== null) throw streamError;
      }
      const rollups = watch(tx.unsafe(FRESH_ROLLUPS, rest, { prepare: true }) as unknown as Promise<unknown>);
      const commit = watch(tx`commit` as unknown as Promise<unknown>);
      sentAll = true;
      rollups.catch(() => {});
      commit.catch(() => {});
      await Promise.all([begin, rollups, commit]);
    } catch (err) {
      if (dead !== null || isConnectionError(err)) throw err;
      if (!sentAll) {
        // failed before COMMIT went out, on a live connection: end the transaction
        try {
          await tx`rollback`;
        } catch (e) {
          if (isConnectionError(e)) throw err;
        }
      }
      tx.release();
      return false;
    }
    tx.release();
    return true;
  }

  private async classifyReadings(
    jobs: ReadingsJob[],
    items: { job: number; pos: number; repeat: boolean }[],
    outcomes: ReadingsOutcome[],
    receivedAt: string,
  ): Promise<void> {
    const a = { meter: [] as number[], s: [] as number[], m: [] as number[], p: [] as number[], c: [] as number[], q: [] as number[], tag: [] as number[] };
    items.forEach((it, tag) => {
      const j = jobs[it.job];
      const cols: RowColumns = it.repeat ? j.d.repeats : j.d.rows;
      a.meter.push(j.meter.id);
      a.s.push(cols.start_s[it.pos]);
      a.m.push(cols.minutes[it.pos]);
      a.p.push(cols.production_wh[it.pos]);
      a.c.push(cols.consumption_wh[it.pos]);
      a.q.push(cols.quality[it.pos]);
      a.tag.push(tag);
    });
    const nums = (x: number[]): string => `{${x.join(',')}}`;
    const rows = await this.sql.unsafe<{ tag: number; same: boolean; s_min: number; s_prod: string; s_cons: string; s_q: number }[]>(
      CLASSIFY_READINGS,
      [nums(a.meter), nums(a.s), nums(a.m), nums(a.p), nums(a.c), nums(a.q), nums(a.tag), receivedAt] as never[],
      { prepare: true },
    );
    if (rows.length !== items.length) {
      throw new Error(`classification found ${rows.length} stored readings for ${items.length} not inserted; retry the batch`);
    }
    for (const r of rows) {
      const it = items[r.tag];
      const stored: StoredReading = { interval_minutes: r.s_min, production_wh: Number(r.s_prod), consumption_wh: Number(r.s_cons), quality: r.s_q };
      (it.repeat ? outcomes[it.job].repeats : outcomes[it.job].rows).set(it.pos, { same: r.same, stored });
    }
  }

  private async flushTelemetry(jobs: TelemetryJob[]): Promise<void> {
    try {
      let minMs = Infinity;
      let maxMs = -Infinity;
      for (const j of jobs) {
        if (j.d.points.n === 0) continue;
        minMs = Math.min(minMs, j.d.min_ts_ms);
        maxMs = Math.max(maxMs, j.d.max_ts_ms);
      }
      const outcomes: TelemetryOutcome[] = jobs.map(() => ({ points: new Map() }));
      if (minMs <= maxMs) {
        await this.partitions.ensure('device_telemetry', minMs, maxMs);
        const receivedAt = new Date(this.opts.now());
        const dev: string[] = [];
        const metric: string[] = [];
        const ts: string[] = [];
        const value: string[] = [];
        const unit: string[] = [];
        const starts: number[] = [];
        let acc = 0;
        for (const j of jobs) {
          starts.push(acc);
          const p = j.d.points;
          acc += p.n;
          if (p.n === 0) continue;
          dev.push(`${j.device.id},`.repeat(p.n).slice(0, -1));
          metric.push(textArrayBody(p.metric));
          ts.push(p.ts_ms.join(','));
          value.push(p.value.join(','));
          unit.push(textArrayBody(p.unit));
        }
        const lit = (parts: string[]): string => `{${parts.join(',')}}`;
        const rows = await this.withPartitionRetry('device_telemetry', minMs, maxMs, () =>
          this.sql.unsafe<{ ord: number }[]>(INSERT_TELEMETRY, [lit(dev), lit(metric), lit(ts), lit(value), lit(unit), receivedAt] as never[], { prepare: true }),
        );
        if (rows.length > 0) {
          const items = rows.map((r) => {
            let k = upperBound(starts, r.ord - 1) - 1;
            while (jobs[k].d.points.n === 0) k--;
            return { job: k, pos: r.ord - 1 - starts[k] };
          });
          const a = { dev: [] as number[], metric: [] as string[], ts: [] as number[], tag: [] as number[] };
          items.forEach((it, tag) => {
            const p = jobs[it.job].d.points;
            a.dev.push(jobs[it.job].device.id);
            a.metric.push(p.metric[it.pos]);
            a.ts.push(p.ts_ms[it.pos]);
            a.tag.push(tag);
          });
          const found = await this.sql.unsafe<{ tag: number; value: number; unit: string }[]>(
            CLASSIFY_TELEMETRY,
            [`{${a.dev.join(',')}}`, textArray(a.metric), `{${a.ts.join(',')}}`, `{${a.tag.join(',')}}`] as never[],
            { prepare: true },
          );
          for (const f of found) {
            const it = items[f.tag];
            const p = jobs[it.job].d.points;
            const same = p.value[it.pos] === f.value && p.unit[it.pos] === f.unit;
            outcomes[it.job].points.set(it.pos, { same, stored_value: f.value, stored_unit: f.unit });
          }
        }
      }
      jobs.forEach((j, k) => j.resolve(outcomes[k]));
    } catch (err) {
      for (const j of jobs) j.reject(err);
    }
  }
}

/** ISO instant of nowMs with microseconds taken from seq: distinct for every group of this process. */
function groupInstant(nowMs: number, seq: number): string {
  return new Date(nowMs).toISOString().replace('Z', `${String(seq % 1000).padStart(3, '0')}Z`);
}

function queuedRows(q: { rows: number }[]): number {
  let n = 0;
  for (const j of q) n += j.rows;
  return n;
}

function take<T extends { rows: number }>(q: T[], maxRows: number): T[] {
  const out: T[] = [q.shift() as T];
  let rows = out[0].rows;
  while (q.length > 0 && rows + q[0].rows <= maxRows) {
    const j = q.shift() as T;
    rows += j.rows;
    out.push(j);
  }
  return out;
}

/** First index whose value is > x (starts is sorted ascending). */
function upperBound(starts: number[], x: number): number {
  let lo = 0;
  let hi = starts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function quoteText(s: string): string {
  return `"${s.replace(/["\\]/g, '\\$&')}"`;
}

function textArrayBody(a: string[]): string {
  return a.map(quoteText).join(',');
}

function textArray(a: string[]): string {
  return `{${textArrayBody(a)}}`;
}

/**
 * The `latest` CTE shared by both write paths: per meter, the newest reading it has sent (an older,
 * late reading refreshes only last_received_at). `$at` is the receive time, `$first`… the six
 * arrays (meter_id, interval_start s, minutes, production, consumption, quality).
 */
function latestCte(at: number, first: number, filter: string): string {
  const p = (i: number): string => `$${first + i}`;
  const newer = (col: string): string => `${col} = case when excluded.interval_start > l.interval_start then excluded.${col} else l.${col} end`;
  return `latest as (
  insert into meter_latest as l (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality, last_received_at)
  select x.meter_id, to_timestamp(x.s), x.m, x.p, x.c, x.q, $${at}::timestamptz
  from unnest(${p(0)}::int8[], ${p(1)}::int8[], ${p(2)}::int2[], ${p(3)}::int8[], ${p(4)}::int8[], ${p(5)}::int2[]) as x(meter_id, s, m, p, c, q)
  ${filter}
  on conflict (meter_id) do update set
    last_received_at = excluded.last_received_at,
    ${['interval_start', 'interval_minutes', 'production_wh', 'consumption_wh', 'quality'].map(newer).join(',\n    ')}
),`;
}

const INSERT_READINGS = `
with input as (
  select meter_id, to_timestamp(start_s) as interval_start, interval_minutes, production_wh, consumption_wh, quality, ord
  from unnest($1::int8[], $2::int8[], $3::int2[], $4::int8[], $5::int8[], $6::int2[])
    with ordinality as t(meter_id, start_s, interval_minutes, production_wh, consumption_wh, quality, ord)
),
ins as (
  insert into meter_readings (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality, received_at)
  select meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality, $7::timestamptz from input
  on conflict do nothing
  returning meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality
),
zones as (
  select z.*, exists (
    select 1 from community_members cm join community_groups g on g.id = cm.group_id
    where cm.user_id = z.user_id and g.zone_id = z.zone_id) as member
  from unnest($8::int8[], $9::text[], $18::int8[], $19::int8[]) as z(meter_id, tz, zone_id, user_id)
),
-- local hour buckets per meter; day and month starts once per distinct hour
mh as (
  select ins.meter_id, date_trunc('hour', ins.interval_start, zones.tz) as hour_start, zones.tz, zones.zone_id, zones.user_id, zones.member,
    sum(ins.production_wh) as production_wh, sum(ins.consumption_wh) as consumption_wh, count(*) as reading_count
  from ins join zones using (meter_id)
  group by 1, 2, 3, 4, 5, 6
),
hrs as (
  select hour_start, tz, date_trunc('day', hour_start, tz) as day_start, date_trunc('month', hour_start, tz) as month_start
  from (select distinct hour_start, tz from mh) x
),
meter_rollups as (
  insert into reading_rollups as r (scope, scope_id, period, bucket_start, production_wh, consumption_wh, reading_count, updated_at)
  select 'METER', meter_id, 'HOUR', hour_start, production_wh, consumption_wh, reading_count, now() from mh
  union all
  select 'METER', mh.meter_id, p.period, case p.period when 'DAY' then hrs.day_start else hrs.month_start end,
    sum(mh.production_wh), sum(mh.consumption_wh), sum(mh.reading_count), now()
  from mh join hrs using (hour_start, tz) cross join (values ('DAY'), ('MONTH')) as p(period)
  group by 2, 3, 4
  on conflict (scope, scope_id, period, bucket_start) do update set
    production_wh = r.production_wh + excluded.production_wh,
    consumption_wh = r.consumption_wh + excluded.consumption_wh,
    reading_count = r.reading_count + excluded.reading_count,
    updated_at = excluded.updated_at
),
-- shared buckets (zone, community) go through the outbox to the single roll-up applier
-- (one row per zone and per community member, its hours as arrays: migration 0011)
zh as (
  select zone_id, null::int8 as user_id, hour_start, sum(production_wh) as p, sum(consumption_wh) as c, sum(reading_count) as n from mh group by 1, 3
  union all
  select zone_id, user_id, hour_start, sum(production_wh), sum(consumption_wh), sum(reading_count) from mh where member group by 1, 2, 3
),
outbox as (
  insert into reading_rollup_outbox (zone_id, user_id, reading_count, batch_seq, hours_s, hours_production_wh, hours_consumption_wh, hours_reading_count)
  select zone_id, user_id, sum(n), $10::int8,
    array_agg(extract(epoch from hour_start)::int8 order by hour_start), array_agg(p::int8 order by hour_start),
    array_agg(c::int8 order by hour_start), array_agg(n::int4 order by hour_start)
  from zh group by zone_id, user_id
),
${latestCte(7, 20, 'where exists (select 1 from ins where ins.meter_id = x.meter_id and ins.interval_start = to_timestamp(x.s))')}
new_gaps as (
  insert into meter_reading_gaps (meter_id, gap_start, gap_end, interval_minutes, missing_intervals, detected_at)
  select meter_id, to_timestamp(s), to_timestamp(e), m, n, $7::timestamptz
  from unnest($11::int8[], $12::int8[], $13::int8[], $14::int2[], $15::int4[]) as g(meter_id, s, e, m, n)
  on conflict do nothing
),
filled as (
  select g.meter_id, g.gap_start, count(*) as n
  from unnest($16::int8[], $17::int8[]) as f(meter_id, s)
  join ins on ins.meter_id = f.meter_id and ins.interval_start = to_timestamp(f.s)
  join meter_reading_gaps g on g.meter_id = f.meter_id and g.filled_at is null
    and g.gap_start <= ins.interval_start and g.gap_end > ins.interval_start
  group by 1, 2
),
fill as (
  update meter_reading_gaps g
  set missing_intervals = greatest(g.missing_intervals - filled.n, 0),
      filled_at = case when g.missing_intervals - filled.n <= 0 then $7::timestamptz end
  from filled where g.meter_id = filled.meter_id and g.gap_start = filled.gap_start
)
select count(*)::int4 as inserted from ins`;

/**
 * The fast path's statement, after the COPY of the readings and of the new meter buckets: the
 * meters' buckets that may exist (upserted) and the zone/community outbox, pre-summed per bucket
 * by the writer, meter_latest and new gaps. (period: 0 HOUR, 1 DAY, 2 MONTH; outbox user_id 0 = the zone's own bucket, else a member
 * candidate, kept only if the user is a community member in that zone.)
 */
const FRESH_ROLLUPS = `
with meter_rollups as (
  insert into reading_rollups as r (scope, scope_id, period, bucket_start, production_wh, consumption_wh, reading_count, updated_at)
  select 'METER', b.id, (array['HOUR', 'DAY', 'MONTH'])[b.period + 1], to_timestamp(b.s), b.p, b.c, b.n, now()
  from unnest($2::int8[], $3::int2[], $4::int8[], $5::int8[], $6::int8[], $7::int8[]) as b(id, period, s, p, c, n)
  on conflict (scope, scope_id, period, bucket_start) do update set
    production_wh = r.production_wh + excluded.production_wh,
    consumption_wh = r.consumption_wh + excluded.consumption_wh,
    reading_count = r.reading_count + excluded.reading_count,
    updated_at = excluded.updated_at
),
o as (
  select * from unnest($8::int8[], $9::int8[], $10::int4[], $11::int4[], $12::int8[]) as o(zone_id, user_id, lo, hi, n)
),
outbox as (
  insert into reading_rollup_outbox (zone_id, user_id, reading_count, batch_seq, hours_s, hours_production_wh, hours_consumption_wh, hours_reading_count)
  select o.zone_id, nullif(o.user_id, 0), o.n, $17::int8,
    ($13::int8[])[o.lo:o.hi], ($14::int8[])[o.lo:o.hi], ($15::int8[])[o.lo:o.hi], ($16::int4[])[o.lo:o.hi]
  from o
  where o.user_id = 0 or exists (
    select 1 from community_members cm join community_groups g on g.id = cm.group_id
    where cm.user_id = o.user_id and g.zone_id = o.zone_id)
),
${latestCte(1, 18, '')}
new_gaps as (
  insert into meter_reading_gaps (meter_id, gap_start, gap_end, interval_minutes, missing_intervals, detected_at)
  select meter_id, to_timestamp(s), to_timestamp(e), m, n, $1::timestamptz
  from unnest($24::int8[], $25::int8[], $26::int8[], $27::int2[], $28::int4[]) as g(meter_id, s, e, m, n)
  on conflict do nothing
)
select 1 as ok`;

/**
 * Binary COPY of a group's meter buckets that cannot exist yet (encodeMeterRollupsCopy); updated_at
 * takes its default, now(), as the upserted buckets' does. If one exists after all (this process's
 * view of the meter was stale), the unique violation aborts the transaction: nothing is written and
 * the group goes the careful way.
 */
const COPY_METER_ROLLUPS = 'copy reading_rollups (scope, scope_id, period, bucket_start, production_wh, consumption_wh, reading_count) from stdin (format binary)';

const PERIOD_NAMES = [Buffer.from('HOUR'), Buffer.from('DAY'), Buffer.from('MONTH')];
const METER_SCOPE = Buffer.from('METER');

/**
 * Meter buckets in PostgreSQL's binary COPY format, per row: scope text 'METER', scope_id int8,
 * period text (0 HOUR, 1 DAY, 2 MONTH), bucket_start timestamptz (from epoch seconds), production_wh,
 * consumption_wh, reading_count int8.
 */
export function encodeMeterRollupsCopy(b: { id: number[]; period: number[]; bucket: number[]; p: number[]; c: number[]; n: number[] }): Buffer {
  const n = b.id.length;
  const buf = Buffer.allocUnsafe(19 + n * 80 + 2); // at most 80 bytes a row; the unused tail is cut off
  buf.write('PGCOPY\n\xff\r\n\0', 0, 'latin1');
  buf.fill(0, 11, 19);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 19;
  const int8 = (x: number): void => {
    v.setInt32(o, 8);
    v.setInt32(o + 4, Math.floor(x / 4294967296));
    v.setUint32(o + 8, x >>> 0);
    o += 12;
  };
  for (let i = 0; i < n; i++) {
    v.setInt16(o, 7);
    v.setInt32(o + 2, METER_SCOPE.length);
    METER_SCOPE.copy(buf, o + 6);
    o += 6 + METER_SCOPE.length;
    int8(b.id[i]);
    const period = PERIOD_NAMES[b.period[i]];
    v.setInt32(o, period.length);
    period.copy(buf, o + 4);
    o += 4 + period.length;
    int8((b.bucket[i] - PG_EPOCH_S) * 1_000_000);
    int8(b.p[i]);
    int8(b.c[i]);
    int8(b.n[i]);
  }
  v.setInt16(o, -1);
  return buf.subarray(0, o + 2);
}

/** Binary COPY of the readings (encodeReadingsCopy); routed to the daily partitions by PostgreSQL. */
const COPY_READINGS = 'copy meter_readings (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality, received_at) from stdin (format binary)';

const PG_EPOCH_S = 946_684_800;

/**
 * The group's rows in PostgreSQL's binary COPY format (no text to parse on the server): per row
 * meter_id int8, interval_start timestamptz (µs since 2000-01-01), interval_minutes int2,
 * production_wh int8, consumption_wh int8, quality int2, received_at timestamptz. Integers are
 * exact (safe integers split into two 32-bit halves).
 */
export function encodeReadingsCopy(jobs: { meter: MeterContext; d: DecodedReadings }[], receivedUsSinceUnix: number): Buffer {
  let n = 0;
  for (const j of jobs) n += j.d.rows.n;
  const buf = Buffer.allocUnsafe(19 + n * 74 + 2); // every byte is written below
  buf.write('PGCOPY\n\xff\r\n\0', 0, 'latin1');
  buf.fill(0, 11, 19);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 19; // flags and header extension length stay 0
  const received = receivedUsSinceUnix - PG_EPOCH_S * 1_000_000;
  const recHi = Math.floor(received / 4294967296);
  const recLo = received >>> 0;
  for (const j of jobs) {
    const r = j.d.rows;
    const idHi = Math.floor(j.meter.id / 4294967296);
    const idLo = j.meter.id >>> 0;
    for (let i = 0; i < r.n; i++) {
      const t = (r.start_s[i] - PG_EPOCH_S) * 1_000_000;
      const p = r.production_wh[i];
      const c = r.consumption_wh[i];
      v.setInt16(o, 7);
      v.setInt32(o + 2, 8);
      v.setInt32(o + 6, idHi);
      v.setUint32(o + 10, idLo);
      v.setInt32(o + 14, 8);
      v.setInt32(o + 18, Math.floor(t / 4294967296));
      v.setUint32(o + 22, t >>> 0);
      v.setInt32(o + 26, 2);
      v.setInt16(o + 30, r.minutes[i]);
      v.setInt32(o + 32, 8);
      v.setInt32(o + 36, Math.floor(p / 4294967296));
      v.setUint32(o + 40, p >>> 0);
      v.setInt32(o + 44, 8);
      v.setInt32(o + 48, Math.floor(c / 4294967296));
      v.setUint32(o + 52, c >>> 0);
      v.setInt32(o + 56, 2);
      v.setInt16(o + 60, r.quality[i]);
      v.setInt32(o + 62, 8);
      v.setInt32(o + 66, recHi);
      v.setUint32(o + 70, recLo);
      o += 74;
    }
  }
  v.setInt16(o, -1);
  return buf;
}

const CONNECTION_SQLSTATES = new Set(['57P01', '57P02', '57P03']);
const CONNECTION_ERRNOS = /\b(ECONNREFUSED|ECONNRESET|EPIPE|CONNECTION_CLOSED|CONNECTION_ENDED|CONNECTION_DESTROYED|CONNECT_TIMEOUT)\b/;

/** Whether an error says the connection (not the statement) failed. */
function isConnectionError(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && e !== undefined && depth < 5; depth++) {
    const x = e as { code?: unknown; errno?: unknown; cause?: unknown; message?: unknown };
    const code = typeof x.code === 'string' ? x.code : typeof x.errno === 'string' ? x.errno : '';
    if (CONNECTION_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code) || CONNECTION_ERRNOS.test(code)) return true;
    if (typeof x.message === 'string' && CONNECTION_ERRNOS.test(x.message)) return true;
    e = x.cause;
  }
  return false;
}

/** Local hour, day and month starts (epoch seconds) of an interval start in a zone's time zone. */
interface Buckets {
  hour: number;
  day: number;
  month: number;
}

/**
 * date_trunc('hour' | 'day' | 'month', interval start, time zone) as PostgreSQL computes it, cached
 * per time zone and interval start (readings of many meters share their interval starts; a new one
 * appears every interval). Bounded: cleared when it holds MAX_BUCKET_KEYS starts.
 */
export class BucketCache {
  private readonly byTz = new Map<string, Map<number, Buckets>>();
  private size = 0;

  get(tz: string, startS: number): Buckets | undefined {
    return this.byTz.get(tz)?.get(startS);
  }

  /** Looks up, in one query, every (time zone, interval start) of the jobs that is not cached yet. */
  async ensure(sql: Sql, jobs: { meter: MeterContext; d: DecodedReadings }[]): Promise<void> {
    const tzs: string[] = [];
    const starts: number[] = [];
    const asked = new Set<string>();
    for (const j of jobs) {
      const tz = j.meter.timezone;
      const known = this.byTz.get(tz);
      const r = j.d.rows;
      let prev = NaN;
      for (let i = -1; i < r.n; i++) {
        // -1: the meter's latest stored reading (its buckets are the newest that may exist)
        const s = i < 0 ? (j.meter.latest?.start_s ?? NaN) : r.start_s[i];
        if (Number.isNaN(s)) continue;
        if (s === prev || known?.has(s) === true) continue;
        prev = s;
        const k = `${tz}\u0000${s}`;
        if (asked.has(k)) continue;
        asked.add(k);
        tzs.push(tz);
        starts.push(s);
      }
    }
    if (starts.length === 0) return;
    if (this.size + starts.length > MAX_BUCKET_KEYS) {
      this.byTz.clear();
      this.size = 0;
    }
    const rows = await sql.unsafe<{ tz: string; s: string; h: string; d: string; m: string }[]>(BUCKETS, [textArray(tzs), `{${starts.join(',')}}`] as never[], { prepare: true });
    for (const row of rows) {
      let m = this.byTz.get(row.tz);
      if (m === undefined) this.byTz.set(row.tz, (m = new Map()));
      if (!m.has(Number(row.s))) this.size++;
      m.set(Number(row.s), { hour: Number(row.h), day: Number(row.d), month: Number(row.m) });
    }
  }
}

const MAX_BUCKET_KEYS = 1_000_000;

const BUCKETS = `
select tz, s::int8 as s,
  extract(epoch from date_trunc('hour', to_timestamp(s), tz))::int8 as h,
  extract(epoch from date_trunc('day', to_timestamp(s), tz))::int8 as d,
  extract(epoch from date_trunc('month', to_timestamp(s), tz))::int8 as m
from unnest($1::text[], $2::int8[]) as t(tz, s)`;

interface Sums {
  p: number;
  c: number;
  n: number;
}

/**
 * Sums a group's rows per meter and local hour/day/month, and per zone (user 0) and per zone and
 * owner (community candidates) and local hour. Energy stays integer Wh (sums of safe integers far
 * below 2^53).
 */
export function aggregateRollups(jobs: { meter: MeterContext; d: DecodedReadings }[], buckets: BucketCache) {
  // buckets after those of the meter's latest stored reading cannot exist yet: copied in (much
  // cheaper than an upsert; a unique violation, if this process's view was stale, rolls the
  // transaction back); the others are upserted
  const fresh = { id: [] as number[], period: [] as number[], bucket: [] as number[], p: [] as number[], c: [] as number[], n: [] as number[] };
  const meter = { id: [] as number[], period: [] as number[], bucket: [] as number[], p: [] as number[], c: [] as number[], n: [] as number[] };
  // one outbox row per (zone, user): its hours are zone.hour/p/c/n[lo..hi] (1-based, inclusive)
  const zone = {
    zone: [] as number[], user: [] as number[], lo: [] as number[], hi: [] as number[], total: [] as number[],
    hour: [] as number[], p: [] as number[], c: [] as number[], n: [] as number[],
  };
  // zone|user → hour → sums
  const shared = new Map<string, { zone: number; user: number; hours: Map<number, Sums> }>();
  const add = (m: Map<number, Sums>, k: number, p: number, c: number, n: number): void => {
    const x = m.get(k);
    if (x === undefined) m.set(k, { p, c, n });
    else {
      x.p += p;
      x.c += c;
      x.n += n;
    }
  };
  for (const j of jobs) {
    const r = j.d.rows;
    if (r.n === 0) continue;
    const tz = j.meter.timezone;
    const hours = new Map<number, Sums>();
    const days = new Map<number, Sums>();
    const months = new Map<number, Sums>();
    const bucketOf = new Map<number, Buckets>();
    // rows are sorted by interval: sum runs of the same hour, then add each run once
    let run: Buckets | null = null;
    let rp = 0;
    let rc = 0;
    let rn = 0;
    for (let i = 0; i < r.n; i++) {
      const b = buckets.get(tz, r.start_s[i]);
      if (b === undefined) throw new Error(`no roll-up bucket cached for ${tz} ${r.start_s[i]}`);
      if (run !== null && b.hour !== run.hour) {
        add(hours, run.hour, rp, rc, rn);
        bucketOf.set(run.hour, run);
        rp = rc = rn = 0;
      }
      run = b;
      rp += r.production_wh[i];
      rc += r.consumption_wh[i];
      rn++;
    }
    if (run !== null) {
      add(hours, run.hour, rp, rc, rn);
      bucketOf.set(run.hour, run);
    }
    for (const [h, x] of hours) {
      const b = bucketOf.get(h) as Buckets;
      add(days, b.day, x.p, x.c, x.n);
      add(months, b.month, x.p, x.c, x.n);
    }
    const latest = j.meter.latest === null ? undefined : buckets.get(tz, j.meter.latest.start_s);
    if (j.meter.latest !== null && latest === undefined) throw new Error(`no roll-up bucket cached for ${tz} ${j.meter.latest.start_s}`);
    const push = (period: number, m: Map<number, Sums>, newest: number): void => {
      for (const [s, x] of m) {
        const to = s > newest ? fresh : meter;
        to.id.push(j.meter.id);
        to.period.push(period);
        to.bucket.push(s);
        to.p.push(x.p);
        to.c.push(x.c);
        to.n.push(x.n);
      }
    };
    push(0, hours, latest?.hour ?? -Infinity);
    push(1, days, latest?.day ?? -Infinity);
    push(2, months, latest?.month ?? -Infinity);
    for (const user of [0, j.meter.user_id]) {
      const k = `${j.meter.zone_id}|${user}`;
      let e = shared.get(k);
      if (e === undefined) shared.set(k, (e = { zone: j.meter.zone_id, user, hours: new Map() }));
      for (const [h, x] of hours) add(e.hours, h, x.p, x.c, x.n);
    }
  }
  for (const e of shared.values()) {
    if (e.hours.size === 0) continue;
    zone.zone.push(e.zone);
    zone.user.push(e.user);
    zone.lo.push(zone.hour.length + 1);
    let total = 0;
    for (const [h, x] of e.hours) {
      zone.hour.push(h);
      zone.p.push(x.p);
      zone.c.push(x.c);
      zone.n.push(x.n);
      total += x.n;
    }
    zone.hi.push(zone.hour.length);
    zone.total.push(total);
  }
  return { fresh, meter, zone };
}

const FIND_NOT_INSERTED = `
select x.ord::int4 as ord
from unnest($1::int8[], $2::int8[]) with ordinality as x(meter_id, s, ord)
join meter_readings r on r.meter_id = x.meter_id and r.interval_start = to_timestamp(x.s)
where r.received_at <> $3::timestamptz`;

const CLASSIFY_READINGS = `
with input as (
  select * from unnest($1::int8[], $2::int8[], $3::int2[], $4::int8[], $5::int8[], $6::int2[], $7::int4[])
    as t(meter_id, start_s, interval_minutes, production_wh, consumption_wh, quality, tag)
),
cmp as (
  select i.*, r.interval_minutes as s_min, r.production_wh as s_prod, r.consumption_wh as s_cons, r.quality as s_q,
    (r.interval_minutes, r.production_wh, r.consumption_wh, r.quality) = (i.interval_minutes, i.production_wh, i.consumption_wh, i.quality) as same
  from input i join meter_readings r on r.meter_id = i.meter_id and r.interval_start = to_timestamp(i.start_s)
),
conflicts as (
  insert into meter_reading_conflicts as c (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality,
    stored_interval_minutes, stored_production_wh, stored_consumption_wh, stored_quality, first_received_at, last_received_at, received_count)
  select meter_id, to_timestamp(start_s), interval_minutes, production_wh, consumption_wh, quality, s_min, s_prod, s_cons, s_q, $8::timestamptz, $8::timestamptz, count(*)
  from cmp where not same
  group by meter_id, start_s, interval_minutes, production_wh, consumption_wh, quality, s_min, s_prod, s_cons, s_q
  on conflict (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality)
  do update set received_count = c.received_count + excluded.received_count, last_received_at = excluded.last_received_at
)
select tag, same, s_min, s_prod, s_cons, s_q from cmp`;

const INSERT_TELEMETRY = `
with input as (
  select device_id, metric, timestamptz 'epoch' + ts_ms * interval '1 millisecond' as ts, value, unit, ord
  from unnest($1::int8[], $2::text[], $3::int8[], $4::float8[], $5::text[]) with ordinality as t(device_id, metric, ts_ms, value, unit, ord)
),
ins as (
  insert into device_telemetry (device_id, metric, ts, value, unit, received_at)
  select device_id, metric, ts, value, unit, $6::timestamptz from input
  on conflict do nothing
  returning device_id, metric, ts, value, unit
),
latest as (
  insert into device_latest as l (device_id, metric, ts, value, unit, received_at)
  select distinct on (device_id, metric) device_id, metric, ts, value, unit, $6::timestamptz
  from ins order by device_id, metric, ts desc
  on conflict (device_id, metric) do update set ts = excluded.ts, value = excluded.value, unit = excluded.unit, received_at = excluded.received_at
  where excluded.ts >= l.ts
)
select i.ord::int4 as ord from input i
where not exists (select 1 from ins where ins.device_id = i.device_id and ins.metric = i.metric and ins.ts = i.ts)`;

const CLASSIFY_TELEMETRY = `
select t.tag, d.value, d.unit
from unnest($1::int8[], $2::text[], $3::int8[], $4::int4[]) as t(device_id, metric, ts_ms, tag)
join device_telemetry d on d.device_id = t.device_id and d.metric = t.metric and d.ts = timestamptz 'epoch' + t.ts_ms * interval '1 millisecond'`;
