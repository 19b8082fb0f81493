import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '@msgpack/msgpack';
import { codes, createDevice, createMeter, post, reading, slot, startHarness, type Harness } from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

async function storedStarts(meterId: number): Promise<string[]> {
  const rows = await h.db.sql<{ s: Date }[]>`select interval_start as s from meter_readings where meter_id = ${meterId} order by 1`;
  return rows.map((r) => r.s.toISOString());
}

describe('reading validation (each rule answers with its reason code)', () => {
  it('a mixed batch stores the good readings and reports every bad one with its reason code', async () => {
    const m = await createMeter(h.db, { serial: 'MIX-1', user_id: h.user_id, zone_id: h.zone_id, max_power_w: 12_000 });
    const misaligned = new Date(Date.parse(slot(6)) + 7 * 60_000).toISOString();
    const batch = [
      reading('MIX-1', slot(10), 100, 200), // 0 good
      reading('MIX-1', slot(9), 0, -5), // 1 negative
      reading('MIX-1', slot(8), 3001, 0), // 2 above 12 kW × 15 min = 3000 Wh
      reading('MIX-1', slot(-2), 1, 1), // 3 interval ends 45 min in the future
      reading('MIX-1', slot(6), 1, 1, { interval_minutes: 5 }), // 4 wrong interval length
      reading('MIX-1', misaligned, 1, 1), // 5 not on a 15-minute boundary
      reading('MIX-1', slot(5), '12.5' as unknown as number, 1), // 6 not an integer Wh
      { meter_serial: 'MIX-1', interval_minutes: 15, production_wh: 1, consumption_wh: 1 }, // 7 no interval_start
      reading('NOPE-404', slot(4), 1, 1), // 8 no such meter
      reading('MIX-1', slot(7), 3000, 150), // 9 good (exactly at capacity)
    ];
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify(batch));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ received: 10, accepted: 2, duplicates: 0, rejected: 8, conflicts: 0 });
    expect(codes(r.body)).toEqual({
      1: 'NEGATIVE_VALUE',
      2: 'ABOVE_CAPACITY',
      3: 'CLOCK_SKEW',
      4: 'BAD_INTERVAL',
      5: 'BAD_INTERVAL',
      6: 'MALFORMED',
      7: 'MALFORMED',
      8: 'UNKNOWN_METER',
    });
    for (const x of r.body.results) expect(x.message.length).toBeGreaterThan(10);
    expect(await storedStarts(m.id)).toEqual([slot(10), slot(7)]);
    // the two rejected intervals between the good ones are a recorded gap
    const gaps = await h.db.sql`select gap_start, gap_end, missing_intervals from meter_reading_gaps where meter_id = ${m.id}`;
    expect(gaps.map((g) => [g.gap_start.toISOString(), g.gap_end.toISOString(), g.missing_intervals])).toEqual([[slot(9), slot(7), 2]]);
  });

  it('?report=full lists every reading, accepted ones included', async () => {
    const m = await createMeter(h.db, { serial: 'FULL-1', user_id: h.user_id, zone_id: h.zone_id });
    const r = await post(`${h.base}/readings?report=full`, m.token, JSON.stringify([reading('FULL-1', slot(3), 1, 2), reading('FULL-1', slot(2), -1, 2)]));
    expect(r.body.results).toEqual([
      { index: 0, status: 'ACCEPTED' },
      expect.objectContaining({ index: 1, status: 'REJECTED', code: 'NEGATIVE_VALUE' }),
    ]);
  });

  it('METER_INACTIVE: readings of an inactive or maintenance meter are refused and nothing is stored', async () => {
    const a = await createMeter(h.db, { serial: 'OFF-1', user_id: h.user_id, zone_id: h.zone_id, status: 'INACTIVE' });
    const b = await createMeter(h.db, { serial: 'MNT-1', user_id: h.user_id, zone_id: h.zone_id, status: 'MAINTENANCE' });
    const ra = await post(`${h.base}/readings`, a.token, JSON.stringify([reading('OFF-1', slot(3), 1, 1)]));
    const rb = await post(`${h.base}/readings`, b.token, JSON.stringify([reading('MNT-1', slot(3), 1, 1)]));
    expect(codes(ra.body)).toEqual({ 0: 'METER_INACTIVE' });
    expect(codes(rb.body)).toEqual({ 0: 'METER_INACTIVE' });
    expect(await storedStarts(a.id)).toEqual([]);
    expect(await storedStarts(b.id)).toEqual([]);
  });

  it('BEFORE_REGISTRATION: an interval before the meter was registered is refused; the one containing registration is accepted', async () => {
    const registered = new Date(Date.parse(slot(4)) + 5 * 60_000); // 5 minutes into slot(4)
    const m = await createMeter(h.db, { serial: 'REG-1', user_id: h.user_id, zone_id: h.zone_id, registered_at: registered });
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('REG-1', slot(5), 1, 1), reading('REG-1', slot(4), 1, 1)]));
    expect(codes(r.body)).toEqual({ 0: 'BEFORE_REGISTRATION' });
    expect(await storedStarts(m.id)).toEqual([slot(4)]);
  });

  it('TOO_OLD: a reading older than the back-fill window (400 days) is refused', async () => {
    const m = await createMeter(h.db, { serial: 'OLD-1', user_id: h.user_id, zone_id: h.zone_id, registered_at: new Date(Date.now() - 600 * 86_400_000) });
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('OLD-1', slot(96 * 401), 1, 1)]));
    expect(codes(r.body)).toEqual({ 0: 'TOO_OLD' });
  });

  it('SPIKE: a jump of more than 90% of capacity from the previous interval is refused, within a batch and across batches', async () => {
    const m = await createMeter(h.db, { serial: 'SPK-1', user_id: h.user_id, zone_id: h.zone_id, max_power_w: 12_000 });
    // capacity 3000 Wh per interval: the spike threshold is a step of 2700 Wh
    const first = await post(`${h.base}/readings`, m.token, JSON.stringify([
      reading('SPK-1', slot(8), 0, 100),
      reading('SPK-1', slot(7), 0, 2800), // +2700: allowed (not more than 90%)
      reading('SPK-1', slot(6), 0, 40),
      reading('SPK-1', slot(5), 0, 2900), // +2860: spike
    ]));
    expect(codes(first.body)).toEqual({ 3: 'SPIKE' });
    expect(first.body.results[0].message).toMatch(/consumption jumped from 40 Wh to 2900 Wh/);
    const second = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('SPK-1', slot(4), 2950, 0)]));
    // slot(5) was refused, so slot(4) has no stored predecessor: not a spike
    expect(second.body.accepted).toBe(1);
    const third = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('SPK-1', slot(3), 3000, 0)]));
    expect(third.body.accepted).toBe(1); // +50 Wh from the stored slot(4)
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('SPK-1', slot(2), 0, 10)]));
    const fifth = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('SPK-1', slot(1), 0, 2990)]));
    expect(codes(fifth.body)).toEqual({ 0: 'SPIKE' }); // compared with the previous batch's stored reading
  });

  it('gaps: a hole is recorded with its missing intervals, and late readings count it down until filled', async () => {
    const m = await createMeter(h.db, { serial: 'GAP-1', user_id: h.user_id, zone_id: h.zone_id });
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('GAP-1', slot(20), 1, 1)]));
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('GAP-1', slot(16), 1, 1)]));
    const gap = async () => (await h.db.sql`select gap_start, gap_end, missing_intervals, filled_at from meter_reading_gaps where meter_id = ${m.id}`)[0];
    expect(await gap()).toMatchObject({ gap_start: new Date(slot(19)), gap_end: new Date(slot(16)), missing_intervals: 3, filled_at: null });
    const late = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('GAP-1', slot(18), 1, 1)]));
    expect(late.body.accepted).toBe(1);
    expect(await gap()).toMatchObject({ missing_intervals: 2, filled_at: null });
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('GAP-1', slot(19), 1, 1), reading('GAP-1', slot(17), 1, 1)]));
    const g = await gap();
    expect(g.missing_intervals).toBe(0);
    expect(g.filled_at).toBeInstanceOf(Date);
    // the latest-reading snapshot still points at the newest interval
    const [latest] = await h.db.sql`select interval_start from meter_latest where meter_id = ${m.id}`;
    expect(latest.interval_start.toISOString()).toBe(slot(16));
  });
});

describe('body formats', () => {
  const three = (serial: string) => [reading(serial, slot(3), 10, 20), reading(serial, slot(2), 11, 21), reading(serial, slot(1), 12, 22)];

  it('NDJSON, CSV and MessagePack batches are decoded like JSON; a bad line is reported by its index', async () => {
    const nd = await createMeter(h.db, { serial: 'FMT-ND', user_id: h.user_id, zone_id: h.zone_id });
    const csv = await createMeter(h.db, { serial: 'FMT-CSV', user_id: h.user_id, zone_id: h.zone_id });
    const mp = await createMeter(h.db, { serial: 'FMT-MP', user_id: h.user_id, zone_id: h.zone_id });
    const ndBody = three('FMT-ND').map((x) => JSON.stringify(x)).join('\n') + '\n{not json}\n';
    const rn = await post(`${h.base}/readings`, nd.token, ndBody, 'application/x-ndjson');
    expect(rn.body).toMatchObject({ received: 4, accepted: 3 });
    expect(codes(rn.body)).toEqual({ 3: 'MALFORMED' });

    const header = 'meter_serial,interval_start,interval_minutes,production_wh,consumption_wh,quality';
    const lines = three('FMT-CSV').map((x) => [x.meter_serial, x.interval_start, 15, x.production_wh, x.consumption_wh, 0].join(','));
    const rc = await post(`${h.base}/readings`, csv.token, [header, ...lines, 'FMT-CSV,2025-01-01T00:00:00Z,15'].join('\r\n'), 'text/csv');
    expect(rc.body).toMatchObject({ received: 4, accepted: 3 });
    expect(codes(rc.body)).toEqual({ 3: 'MALFORMED' });

    // MessagePack: an envelope with epoch-millisecond times
    const env = { id: 7, readings: three('FMT-MP').map((x) => ({ ...x, interval_start: Date.parse(x.interval_start) })) };
    const rm = await post(`${h.base}/readings`, mp.token, encode(env), 'application/msgpack');
    expect(rm.body).toMatchObject({ id: 7, received: 3, accepted: 3 });

    for (const id of [nd.id, csv.id, mp.id]) {
      const rows = await h.db.sql`select production_wh, consumption_wh from meter_readings where meter_id = ${id} order by interval_start`;
      expect(rows.map((x) => [Number(x.production_wh), Number(x.consumption_wh)])).toEqual([[10, 20], [11, 21], [12, 22]]);
    }
  });

  it('a body that cannot be parsed at all is refused with 400 MALFORMED; an unknown Content-Type with 415', async () => {
    const m = await createMeter(h.db, { serial: 'FMT-BAD', user_id: h.user_id, zone_id: h.zone_id });
    const r = await post(`${h.base}/readings`, m.token, '[{"meter_serial": ');
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('MALFORMED');
    const u = await post(`${h.base}/readings`, m.token, 'x', 'text/plain');
    expect(u.status).toBe(415);
    expect(u.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('telemetry', () => {
  it('stores points with their unit, keeps the latest value per device and metric, and rejects with reason codes', async () => {
    const d = await createDevice(h.db, { serial: 'INV-T1', user_id: h.user_id });
    const t = (min: number) => new Date(Date.now() - min * 60_000).toISOString();
    const batch = [
      { device_serial: 'INV-T1', metric: 'ac_power', value: 4200.5, unit: 'W', time: t(3) },
      { device_serial: 'INV-T1', metric: 'ac_power', value: '4300.25', unit: 'W', time: t(2) },
      { device_serial: 'INV-T1', metric: 'dc_voltage', value: 612.3, unit: 'V', time: t(2) },
      { device_serial: 'INV-T1', metric: 'ac_power', value: 1, unit: 'furlongs', time: t(1) }, // 3
      { device_serial: 'INV-T1', metric: 'ac_power', value: 1, unit: 'W', time: new Date(Date.now() + 3_600_000).toISOString() }, // 4
      { device_serial: 'INV-NOPE', metric: 'ac_power', value: 1, unit: 'W', time: t(1) }, // 5
      { device_serial: 'INV-T1', metric: 'AC Power', value: 1, unit: 'W', time: t(1) }, // 6
      { device_serial: 'INV-T1', metric: 'ac_power', value: 'NaN', unit: 'W', time: t(1) }, // 7
    ];
    const r = await post(`${h.base}/telemetry`, d.token, JSON.stringify(batch));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ received: 8, accepted: 3, rejected: 5 });
    expect(codes(r.body)).toEqual({ 3: 'BAD_UNIT', 4: 'CLOCK_SKEW', 5: 'UNKNOWN_DEVICE', 6: 'MALFORMED', 7: 'MALFORMED' });
    const latest = await h.db.sql`select metric, value, unit from device_latest where device_id = ${d.id} order by metric`;
    expect(latest.map((x) => [x.metric, x.value, x.unit])).toEqual([['ac_power', 4300.25, 'W'], ['dc_voltage', 612.3, 'V']]);
    const [{ n }] = await h.db.sql`select count(*)::int as n from device_telemetry where device_id = ${d.id}`;
    expect(n).toBe(3);
  });

  it('DEVICE_INACTIVE and BEFORE_REGISTRATION apply to telemetry too', async () => {
    const off = await createDevice(h.db, { serial: 'INV-OFF', user_id: h.user_id, status: 'INACTIVE' });
    const young = await createDevice(h.db, { serial: 'INV-NEW', user_id: h.user_id, registered_at: new Date(Date.now() - 60_000) });
    const p = { metric: 'ac_power', value: 1, unit: 'kW', time: new Date(Date.now() - 3_600_000).toISOString() };
    expect(codes((await post(`${h.base}/telemetry`, off.token, JSON.stringify([p]))).body)).toEqual({ 0: 'DEVICE_INACTIVE' });
    expect(codes((await post(`${h.base}/telemetry`, young.token, JSON.stringify([p]))).body)).toEqual({ 0: 'BEFORE_REGISTRATION' });
  });
});

describe('partitions', () => {
  const names = async () => (await h.db.sql<{ relname: string }[]>`
    select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
    where p.relname = 'meter_readings'`).map((r) => r.relname);
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10).replace(/-/g, '');

  it('daily partitions exist ahead of now, and a back-filled day gets its partition on demand', async () => {
    const before = await names();
    for (let k = 0; k <= 7; k++) expect(before).toContain(`meter_readings_p${day(Date.now() + k * 86_400_000)}`);
    const old = Date.now() - 40 * 86_400_000;
    expect(before).not.toContain(`meter_readings_p${day(old)}`);
    const m = await createMeter(h.db, { serial: 'BACK-1', user_id: h.user_id, zone_id: h.zone_id });
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('BACK-1', slot(0, 15, old), 5, 5)]));
    expect(r.body.accepted).toBe(1);
    expect(await names()).toContain(`meter_readings_p${day(old)}`);
  });

  it('a partition dropped behind the service\'s back is re-created and the batch still stored', async () => {
    const m = await createMeter(h.db, { serial: 'DROP-1', user_id: h.user_id, zone_id: h.zone_id });
    const when = Date.now() - 60 * 86_400_000;
    expect((await post(`${h.base}/readings`, m.token, JSON.stringify([reading('DROP-1', slot(0, 15, when), 1, 1)]))).body.accepted).toBe(1);
    await h.db.sql.unsafe(`drop table meter_readings_p${day(when)}`);
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('DROP-1', slot(1, 15, when), 2, 2)]));
    expect(r.status).toBe(200);
    expect(r.body.accepted).toBe(1);
    expect(await names()).toContain(`meter_readings_p${day(when)}`);
  });
});

describe('binary COPY of readings', () => {
  it('stores every field exactly, across the 32-bit boundary of Wh values, with the group\'s received_at', async () => {
    // 60 GW for 15 min = 15,000,000,000 Wh of capacity: registers above 2^32 are legal here
    const m = await createMeter(h.db, { serial: 'BIG-1', user_id: h.user_id, zone_id: h.zone_id, max_power_w: 60_000_000_000 });
    const big = 2 ** 32 + 7;
    const before = Date.now();
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([
      reading('BIG-1', slot(3), big, 2 ** 32 - 1, { quality: 19 }),
      reading('BIG-1', slot(2), 0, 1, { quality: 8 }),
    ]));
    expect(r.body).toMatchObject({ accepted: 2, rejected: 0 });
    const rows = await h.db.sql`
      select meter_id::int8 as id, interval_start, interval_minutes, production_wh, consumption_wh, quality, received_at
      from meter_readings where meter_id = ${m.id} order by interval_start`;
    expect(rows.map((x) => [Number(x.id), x.interval_start.toISOString(), x.interval_minutes, x.production_wh, x.consumption_wh, x.quality])).toEqual([
      [m.id, slot(3), 15, String(big), String(2 ** 32 - 1), 19],
      [m.id, slot(2), 15, '0', '1', 8],
    ]);
    expect(rows[0].received_at.getTime()).toBe(rows[1].received_at.getTime());
    expect(rows[0].received_at.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(rows[0].received_at.getTime()).toBeLessThanOrEqual(Date.now() + 1);
  });
});
