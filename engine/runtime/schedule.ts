// Delivery-interval calendar: makes sure every zone has its delivery intervals written ahead.
//
// A zone trades energy for fixed delivery intervals (grid_zones.interval_minutes: 5, 15, 30 or 60,
// aligned to the UTC epoch). Each interval's gate opens gate_open_lead_minutes before delivery and
// closes gate_close_lead_minutes before it; its capacity is the zone's capacity_w for the length of
// the interval, in Wh (rounded down: a limit is never exceeded). The runtime's clock opens and
// closes gates from these rows (runtime.ts, "Delivery-interval lifecycle"); without new rows a zone
// would stop trading when its last seeded interval had passed.
//
// One idempotent statement: intervals that exist (seeded, created by an operator, or by an earlier
// pass, possibly with other capacities) are left alone (on conflict (zone_id, starts_at) do
// nothing). Only intervals whose gate has not closed yet are created.
import type { Sql } from '../../schema/db.js';

/**
 * Writes the missing delivery intervals of `zones` (default: every zone) whose gate opens before
 * now + `horizon_ms`. Returns how many were created.
 */
export async function scheduleIntervals(sql: Sql, now_ms: number, horizon_ms: number, zones?: number[]): Promise<number> {
  if (!Number.isSafeInteger(now_ms) || !Number.isSafeInteger(horizon_ms) || horizon_ms <= 0) {
    throw new RangeError('scheduleIntervals: now_ms and a positive horizon_ms must be integer milliseconds');
  }
  const rows = await sql<{ n: string }[]>`
    with now_ as (select timestamptz 'epoch' + ${now_ms}::bigint * interval '1 millisecond' as t),
    z as (
      select id, interval_minutes, gate_open_lead_minutes, gate_close_lead_minutes,
             greatest(1, capacity_w * interval_minutes / 60) as capacity_wh,
             make_interval(mins => interval_minutes) as len
        from grid_zones
       where ${zones === undefined ? sql`true` : sql`id = any(${zones}::bigint[])`}
    ),
    slots as (
      select z.id as zone_id, s as starts_at, s + z.len as ends_at,
             s - make_interval(mins => z.gate_open_lead_minutes) as gate_opens_at,
             s - make_interval(mins => z.gate_close_lead_minutes) as gate_closes_at,
             z.capacity_wh
        from z, now_,
             generate_series(
               -- the first interval boundary (UTC epoch multiple of the length) at or after now
               timestamptz 'epoch' + ceil(extract(epoch from now_.t) / (z.interval_minutes * 60)) * z.len,
               now_.t + ${horizon_ms}::bigint * interval '1 millisecond' + make_interval(mins => z.gate_open_lead_minutes),
               z.len) as s
    ),
    ins as (
      insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
      select zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh
        from slots, now_
       where gate_closes_at > now_.t
         and gate_opens_at < now_.t + ${horizon_ms}::bigint * interval '1 millisecond'
         -- skip existing rows before the insert: a conflicting row would still draw an identity value
         and not exists (select 1 from delivery_intervals d where d.zone_id = slots.zone_id and d.starts_at = slots.starts_at)
      on conflict (zone_id, starts_at) do nothing
      returning 1
    )
    select count(*)::text as n from ins`;
  return Number(rows[0].n);
}
