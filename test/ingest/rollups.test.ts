import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../schema/log.js';
import { createIngestService } from '../../ingest/index.js';
import { createMeter, createUser, post, reading, startHarness, type Harness } from './helpers.js';

// Asia/Kolkata is UTC+05:30 all year: local hours start at :30 UTC and local days at 18:30 UTC.
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ zone_timezone: 'Asia/Kolkata' });
});
afterAll(async () => {
  await h.close();
});

const HOUR = 3_600_000;
const DAY = 86_400_000;
const IST = 5.5 * HOUR;
const base = Math.floor(Date.now() / DAY) * DAY - 10 * DAY; // a UTC midnight 10 days ago
const at = (ms: number) => new Date(ms).toISOString();
/** Start of the IST month containing instant ms, as a UTC instant. */
const istMonth = (ms: number) => {
  const d = new Date(ms + IST);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1) - IST;
};

async function rollup(scope: string, id: number, period: string, bucketMs: number) {
  const rows = await h.db.sql`
    select production_wh, consumption_wh, reading_count from reading_rollups
    where scope = ${scope} and scope_id = ${id} and period = ${period} and bucket_start = ${new Date(bucketMs)}`;
  return rows.length === 0 ? null : { p: Number(rows[0].production_wh), c: Number(rows[0].consumption_wh), n: Number(rows[0].reading_count) };
}

describe('roll-ups', () => {
  it('hourly, daily and monthly per meter, zone and community in the zone\'s local time; late readings update the right bucket', async () => {
    const member = await createUser(h.db, 'member');
    const outsider = await createUser(h.db, 'outsider');
    const [g] = await h.db.sql`insert into community_groups (name, zone_id, created_by) values ('Street', ${h.zone_id}, ${member}) returning id`;
    const group = Number(g.id);
    await h.db.sql`insert into community_members (group_id, user_id, joined_at) values (${group}, ${member}, ${new Date(base - 30 * DAY)})`;
    const a = await createMeter(h.db, { serial: 'RU-A', user_id: member, zone_id: h.zone_id });
    const b = await createMeter(h.db, { serial: 'RU-B', user_id: outsider, zone_id: h.zone_id });

    // 18:00 and 18:15 UTC = 23:30 and 23:45 IST (day D); 18:30 UTC = 00:00 IST of day D+1
    const t1800 = base + 18 * HOUR;
    await post(`${h.base}/readings`, a.token, JSON.stringify([
      reading('RU-A', at(t1800), 100, 10),
      reading('RU-A', at(t1800 + 15 * 60_000), 200, 20),
      reading('RU-A', at(t1800 + 30 * 60_000), 400, 40),
    ]));
    await post(`${h.base}/readings`, b.token, JSON.stringify([reading('RU-B', at(t1800), 1000, 1)]));
    await h.service.settle();

    const hourD = t1800 - 30 * 60_000; // 23:00 IST = 17:30 UTC
    const dayD = base - IST; // IST midnight of the UTC date `base` = 18:30 UTC the day before
    const dayD1 = base + DAY - IST;
    expect(await rollup('METER', a.id, 'HOUR', hourD)).toEqual({ p: 300, c: 30, n: 2 });
    expect(await rollup('METER', a.id, 'HOUR', t1800 + 30 * 60_000)).toEqual({ p: 400, c: 40, n: 1 });
    expect(await rollup('METER', a.id, 'DAY', dayD)).toEqual({ p: 300, c: 30, n: 2 });
    expect(await rollup('METER', a.id, 'DAY', dayD1)).toEqual({ p: 400, c: 40, n: 1 });
    expect(await rollup('ZONE', h.zone_id, 'HOUR', hourD)).toEqual({ p: 1300, c: 31, n: 3 });
    expect(await rollup('COMMUNITY', group, 'HOUR', hourD)).toEqual({ p: 300, c: 30, n: 2 }); // the outsider does not count

    // late: an earlier interval of the same hour, and a reading three days earlier
    const earlier = base - 3 * DAY + 6 * HOUR; // 11:30 IST, day D-3
    await post(`${h.base}/readings`, a.token, JSON.stringify([reading('RU-A', at(t1800 - 15 * 60_000), 50, 5), reading('RU-A', at(earlier), 7, 7)]));
    await h.service.settle();
    expect(await rollup('METER', a.id, 'HOUR', hourD)).toEqual({ p: 350, c: 35, n: 3 });
    expect(await rollup('METER', a.id, 'DAY', dayD)).toEqual({ p: 350, c: 35, n: 3 });
    expect(await rollup('METER', a.id, 'DAY', dayD - 3 * DAY)).toEqual({ p: 7, c: 7, n: 1 });
    expect(await rollup('METER', a.id, 'DAY', dayD1)).toEqual({ p: 400, c: 40, n: 1 }); // untouched
    expect(await rollup('ZONE', h.zone_id, 'HOUR', hourD)).toEqual({ p: 1350, c: 36, n: 4 });

    // months: the sum over the meter's months equals the sum of its readings
    const months = new Map<number, { p: number; n: number }>();
    for (const [ms, p] of [[t1800, 100], [t1800 + 15 * 60_000, 200], [t1800 + 30 * 60_000, 400], [t1800 - 15 * 60_000, 50], [earlier, 7]] as const) {
      const k = istMonth(ms);
      const cur = months.get(k) ?? { p: 0, n: 0 };
      months.set(k, { p: cur.p + p, n: cur.n + 1 });
    }
    for (const [k, v] of months) expect(await rollup('METER', a.id, 'MONTH', k)).toMatchObject({ p: v.p, n: v.n });

    // roll-ups equal a recomputation from the stored readings
    const [check] = await h.db.sql`
      select (select sum(production_wh) from meter_readings where meter_id = ${a.id})::int8 as raw,
             (select sum(production_wh) from reading_rollups where scope = 'METER' and scope_id = ${a.id} and period = 'HOUR')::int8 as hourly,
             (select count(*) from reading_rollup_outbox)::int as pending`;
    expect(Number(check.raw)).toBe(Number(check.hourly));
    expect(check.pending).toBe(0);
    expect(h.service.stats().rollup_lag_ms_p99).not.toBeNull();
  });
});

describe('roll-ups when this process\'s view of a meter is stale', () => {
  it('another process wrote the same hour: the fast path\'s new-bucket insert collides, the batch is written the careful way, each reading counted once', async () => {
    const owner = await createUser(h.db, 'two-process');
    const m = await createMeter(h.db, { serial: 'RU-STALE', user_id: owner, zone_id: h.zone_id });
    // a second ingest process with the default cache: it learns the meter (no reading yet) and keeps that view
    const other = await createIngestService({ sql: h.db.sql, log: createLogger('silent', 'ingest-test-2'), worker_threads: 1, background: false });
    try {
      const principal = { kind: 'meter' as const, id: m.id };
      const hourStart = base - 2 * DAY + 6 * HOUR + 30 * 60_000; // a local (IST) hour start
      const body = (k: number, p: number) => new TextEncoder().encode(JSON.stringify([reading('RU-STALE', at(hourStart + k * 15 * 60_000), p, 1)]));
      // a batch with nothing valid in it: the other process now caches the meter as having no reading
      const nothing = await other.submitReadings(principal, new TextEncoder().encode('[{"interval_start": "soon"}]'), 'json');
      expect(nothing).toMatchObject({ accepted: 0, rejected: 1 });
      // this process writes three intervals of an hour (and so of its day and month)
      const mine = [0, 1, 2].map((k) => reading('RU-STALE', at(hourStart + k * 15 * 60_000), 10 ** k, 1));
      expect((await post(`${h.base}/readings`, m.token, JSON.stringify(mine))).body.accepted).toBe(3);
      // to the other process the hour's last interval is the meter's first reading: its buckets
      // look new, and inserting them collides with the stored ones
      expect((await other.submitReadings(principal, body(3, 1000), 'json')).accepted).toBe(1);
      await other.settle();
      await h.service.settle();
      expect(await rollup('METER', m.id, 'HOUR', hourStart)).toEqual({ p: 1111, c: 4, n: 4 });
      const [{ day }] = await h.db.sql`select sum(reading_count)::int as day from reading_rollups where scope = 'METER' and scope_id = ${m.id} and period = 'DAY'`;
      expect(day).toBe(4);
      expect(await rollup('ZONE', h.zone_id, 'HOUR', hourStart)).toEqual({ p: 1111, c: 4, n: 4 });
    } finally {
      await other.close();
    }
  });
});


describe('outbox rows of earlier shapes', () => {
  it('rows written before migration 0011 (one per zone or member and hour; one per meter before 0010) are folded with the array rows, each counted once', async () => {
    const member = await createUser(h.db, 'legacy-member');
    const [g] = await h.db.sql`insert into community_groups (name, zone_id, created_by) values ('Legacy', ${h.zone_id}, ${member}) returning id`;
    const group = Number(g.id);
    await h.db.sql`insert into community_members (group_id, user_id, joined_at) values (${group}, ${member}, ${new Date(base - 30 * DAY)})`;
    const m = await createMeter(h.db, { serial: 'RU-LEGACY', user_id: member, zone_id: h.zone_id });
    const hourStart = base - 6 * DAY + 3 * HOUR + 30 * 60_000; // a local (IST) hour start no other test writes
    await h.db.sql`
      insert into reading_rollup_outbox (zone_id, user_id, hour_start, production_wh, consumption_wh, reading_count, batch_seq)
      values (${h.zone_id}, null, ${new Date(hourStart)}, 1000, 100, 4, 0), (${h.zone_id}, ${member}, ${new Date(hourStart)}, 500, 50, 2, 0)`;
    await h.db.sql`
      insert into reading_rollup_outbox (meter_id, hour_start, production_wh, consumption_wh, reading_count)
      values (${m.id}, ${new Date(hourStart)}, 7, 7, 1)`;
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('RU-LEGACY', at(hourStart + 15 * 60_000), 20, 2)]));
    expect(r.body.accepted).toBe(1);
    await h.service.settle();
    expect(await rollup('ZONE', h.zone_id, 'HOUR', hourStart)).toEqual({ p: 1027, c: 109, n: 6 });
    expect(await rollup('COMMUNITY', group, 'HOUR', hourStart)).toEqual({ p: 527, c: 59, n: 4 });
    expect(await rollup('METER', m.id, 'HOUR', hourStart)).toEqual({ p: 27, c: 9, n: 2 });
    expect((await h.db.sql`select count(*)::int as n from reading_rollup_outbox`)[0].n).toBe(0);
  });
});

describe('the fast path copies new meter buckets', () => {
  it('a group with thousands of new buckets is written by its two COPYs, without falling back to the careful statement; roll-ups equal the readings', async () => {
    const owner = await createUser(h.db, 'copy-buckets');
    const meters = await Promise.all([0, 1, 2].map((k) => createMeter(h.db, { serial: `RU-COPY-${k}`, user_id: owner, zone_id: h.zone_id })));
    // count the careful statement's uses (it is the only one with "on conflict do nothing" into meter_readings)
    let careful = 0;
    const sql = new Proxy(h.db.sql, {
      get(target, key, receiver) {
        if (key !== 'unsafe') return Reflect.get(target, key, receiver);
        return (query: string, ...rest: unknown[]) => {
          if (/insert into meter_readings[\s\S]*on conflict do nothing/.test(query)) careful++;
          return (target.unsafe as (...a: unknown[]) => unknown)(query, ...rest);
        };
      },
    });
    const other = await createIngestService({ sql, log: createLogger('silent', 'ingest-test-copy'), worker_threads: 1, background: false });
    try {
      const from = base - 40 * DAY; // 1,500 intervals (about 16 local days) per meter, every bucket new
      const submits = meters.map((m, k) => {
        const items = Array.from({ length: 1500 }, (_, i) => reading(`RU-COPY-${k}`, at(from + i * 15 * 60_000), (i * 7 + k) % 500, (i * 3) % 200));
        return other.submitReadings({ kind: 'meter', id: m.id }, new TextEncoder().encode(JSON.stringify(items)), 'json');
      });
      for (const r of await Promise.all(submits)) expect(r.accepted).toBe(1500);
      await other.settle();
      expect(careful).toBe(0);
      for (const m of meters) {
        const [c] = await h.db.sql`
          select (select sum(production_wh)::int8 from meter_readings where meter_id = ${m.id}) as raw,
                 (select count(*)::int from meter_readings where meter_id = ${m.id}) as n,
                 (select sum(production_wh)::int8 from reading_rollups where scope = 'METER' and scope_id = ${m.id} and period = 'HOUR') as hour_p,
                 (select sum(reading_count)::int from reading_rollups where scope = 'METER' and scope_id = ${m.id} and period = 'HOUR') as hour_n,
                 (select sum(reading_count)::int from reading_rollups where scope = 'METER' and scope_id = ${m.id} and period = 'DAY') as day_n,
                 (select sum(production_wh)::int8 from reading_rollups where scope = 'METER' and scope_id = ${m.id} and period = 'MONTH') as month_p,
                 (select count(*)::int from reading_rollups where scope = 'METER' and scope_id = ${m.id} and period = 'HOUR') as hours`;
        expect(c).toEqual({ raw: c.hour_p, n: 1500, hour_p: c.month_p, hour_n: 1500, day_n: 1500, month_p: c.raw, hours: 376 }); // IST hours start at :30: 1,500 intervals from a UTC midnight touch 376
      }
    } finally {
      await other.close();
    }
  });
});
