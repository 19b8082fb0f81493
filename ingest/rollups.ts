// The roll-up applier: folds reading_rollup_outbox rows (written atomically with their readings)
// into reading_rollups — hour, day and month buckets per zone and per community (per-meter
// buckets are written with the readings themselves) — and deletes them, in one statement. A late reading lands in the bucket of its own interval, so late data
// updates the right bucket. One applier at a time (advisory lock) keeps bucket updates free of
// deadlocks across processes.
import type { Sql } from '../schema/db.js';

const APPLIER_LOCK_KEY = 0x6b77782d726f6c6cn; // "kwx-roll"

export interface AppliedBatch {
  batch_seq: number;
  readings: number;
}

export class RollupApplier {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private again = false;
  private deferred: NodeJS.Timeout | null = null;
  private lastStartMs = -Infinity;
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly maxRows: number,
    private readonly intervalMs: number,
    private readonly onApplied: (batches: AppliedBatch[]) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    this.stopped = false;
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.kick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.deferred !== null) clearTimeout(this.deferred);
    this.timer = null;
    this.deferred = null;
  }

  /**
   * Asks for a run soon: coalesced with one in progress, and at most one run per `intervalMs`, so
   * that under a burst the applier folds large batches (cheap per reading) instead of competing
   * with the writer for every commit. Roll-up lag is bounded by about two intervals plus a run.
   */
  kick(): void {
    if (this.stopped) return;
    if (this.running !== null) {
      this.again = true;
      return;
    }
    const wait = this.lastStartMs + this.intervalMs - performance.now();
    if (wait > 0) {
      if (this.deferred === null) {
        this.deferred = setTimeout(() => {
          this.deferred = null;
          this.kick();
        }, wait);
      }
      return;
    }
    this.lastStartMs = performance.now();
    this.running = this.applyUntilEmpty()
      .catch((err) => {
        this.onError(err);
        return 0;
      })
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Applies everything in the outbox now; resolves with the number of outbox buckets folded. */
  async drain(): Promise<number> {
    while (this.running !== null) await this.running;
    return this.applyUntilEmpty();
  }

  private async applyUntilEmpty(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.applyOnce();
      total += n;
      if (n < this.maxRows) return total;
    }
  }

  /**
   * One statement (atomic on its own, so no sql.begin(): its ROLLBACK on a connection that has just
   * dropped crashes the process from a timer, postgres.js 3.4.9, porsager/postgres#1208): takes the
   * applier lock for the statement's transaction and, if it got it, folds at most maxRows outbox
   * buckets (an array row of the outbox holds several). Returns buckets folded (0 when another
   * process holds the lock).
   */
  async applyOnce(): Promise<number> {
    let folded = 0;
    const applied: AppliedBatch[] = [];
    const rows = await this.sql.unsafe<{ batch_seq: string; readings: string; outbox_rows: string }[]>(APPLY, [this.maxRows, APPLIER_LOCK_KEY.toString()] as never[], { prepare: true });
    for (const r of rows) {
      folded += Number(r.outbox_rows);
      applied.push({ batch_seq: Number(r.batch_seq), readings: Number(r.readings) });
    }
    if (applied.length > 0) this.onApplied(applied);
    return folded;
  }
}

const APPLY = `
with lock as materialized (
  select pg_try_advisory_xact_lock($2::int8) as ok
),
-- the oldest rows, at most $1 buckets (and at least one row): an array row (migration 0011) holds
-- one bucket per element, a row of the earlier shapes one
pick as (
  select id from (
    select id, sum(coalesce(cardinality(hours_s), 1)) over (order by id) - coalesce(cardinality(hours_s), 1) as before
    from (select id, hours_s from reading_rollup_outbox where (select ok from lock) order by id limit $1) x
  ) y
  where before < $1
),
d as (
  delete from reading_rollup_outbox
  where id in (select id from pick)
  returning meter_id, zone_id, user_id, hour_start, production_wh, consumption_wh, reading_count, batch_seq,
    hours_s, hours_production_wh, hours_consumption_wh, hours_reading_count
),
-- rows from before migration 0010 name a meter; newer rows name a zone (and a community member);
-- rows from migration 0011 on carry their hours as arrays
u as (
  select meter_id, zone_id, user_id, hour_start, production_wh, consumption_wh, reading_count from d where hours_s is null
  union all
  select null, d.zone_id, d.user_id, to_timestamp(x.h), x.p, x.c, x.n
  from d cross join lateral unnest(d.hours_s, d.hours_production_wh, d.hours_consumption_wh, d.hours_reading_count) as x(h, p, c, n)
  where d.hours_s is not null
),
m as (
  select u.meter_id, coalesce(u.zone_id, sm.zone_id) as zone_id, coalesce(u.user_id, sm.user_id) as user_id,
    u.hour_start, u.production_wh, u.consumption_wh, u.reading_count, z.timezone as tz
  from u left join smart_meters sm on sm.id = u.meter_id
  join grid_zones z on z.id = coalesce(u.zone_id, sm.zone_id)
),
s as (
  select 'METER' as scope, meter_id as scope_id, hour_start, tz, production_wh, consumption_wh, reading_count from m where meter_id is not null
  union all
  select 'ZONE', zone_id, hour_start, tz, production_wh, consumption_wh, reading_count from m where meter_id is not null or user_id is null
  union all
  -- a member's meters count for each community of the meter's zone the member belonged to at the hour
  select 'COMMUNITY', cm.group_id, m.hour_start, m.tz, m.production_wh, m.consumption_wh, m.reading_count
  from m
  join community_members cm on cm.user_id = m.user_id and cm.joined_at <= m.hour_start and (cm.left_at is null or cm.left_at > m.hour_start)
  join community_groups g on g.id = cm.group_id and g.zone_id = m.zone_id
  where m.meter_id is not null or m.user_id is not null
),
-- sum per scope and local hour first; day and month starts are computed once per distinct hour
h as (
  select scope, scope_id, hour_start, tz, sum(production_wh) as production_wh, sum(consumption_wh) as consumption_wh, sum(reading_count) as reading_count
  from s group by 1, 2, 3, 4
),
hours as (
  select hour_start, tz, date_trunc('day', hour_start, tz) as day_start, date_trunc('month', hour_start, tz) as month_start
  from (select distinct hour_start, tz from h) x
),
b as (
  select scope, scope_id, 'HOUR' as period, hour_start as bucket_start, production_wh, consumption_wh, reading_count from h
  union all
  select h.scope, h.scope_id, p.period, case p.period when 'DAY' then hours.day_start else hours.month_start end,
    sum(h.production_wh), sum(h.consumption_wh), sum(h.reading_count)
  from h join hours using (hour_start, tz) cross join (values ('DAY'), ('MONTH')) as p(period)
  group by 1, 2, 3, 4
),
up as (
  insert into reading_rollups as r (scope, scope_id, period, bucket_start, production_wh, consumption_wh, reading_count, updated_at)
  select scope, scope_id, period, bucket_start, production_wh, consumption_wh, reading_count, now() from b
  on conflict (scope, scope_id, period, bucket_start) do update set
    production_wh = r.production_wh + excluded.production_wh,
    consumption_wh = r.consumption_wh + excluded.consumption_wh,
    reading_count = r.reading_count + excluded.reading_count,
    updated_at = excluded.updated_at
)
select batch_seq, coalesce(sum(reading_count) filter (where user_id is null or meter_id is not null), 0) as readings,
  sum(coalesce(cardinality(hours_s), 1)) as outbox_rows
from d group by batch_seq`;
