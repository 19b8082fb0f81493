import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readingsCsv, readingsNdjson, simulateReadings, type SimMeter } from '../../bench/meter-sim.js';
import { createMeter, post, startHarness, type Harness } from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

const DAY = 86_400_000;

describe('meter simulator through ingest', () => {
  it('every injected fault gets the reason code it was labelled with; every clean reading is stored', async () => {
    const spec: SimMeter = { serial: 'SIM-1', max_power_w: 12_000, interval_minutes: 15, pv_peak_w: 6_000, base_load_w: 300, seed: 42 };
    const m = await createMeter(h.db, { serial: spec.serial, user_id: h.user_id, zone_id: h.zone_id, max_power_w: spec.max_power_w });
    const items = simulateReadings(spec, Date.now() - 3 * DAY, 3 * 96 - 4, { fault_rate: 0.2 });
    const faults = new Set(items.map((i) => i.fault).filter((f) => f !== null));
    expect(faults.size).toBeGreaterThanOrEqual(6); // the seed exercises most fault kinds
    const r = await post(`${h.base}/readings`, m.token, readingsNdjson(items.map((i) => i.reading)), 'application/x-ndjson');
    expect(r.status).toBe(200);
    const got = new Map<number, string>(r.body.results.map((x: { index: number; code?: string; status: string }) => [x.index, x.code ?? x.status]));
    const mismatches = items
      .map((it, i) => ({ i, expect: it.expect, got: got.get(i) ?? 'ACCEPTED', fault: it.fault }))
      .filter((x) => x.expect !== x.got);
    expect(mismatches).toEqual([]);
    const accepted = items.filter((i) => i.expect === 'ACCEPTED').length;
    const [{ n }] = await h.db.sql`select count(*)::int as n from meter_readings where meter_id = ${m.id}`;
    expect(n).toBe(accepted);
    // a dropped interval (GAP) is recorded as a gap
    if (faults.has('GAP')) {
      const [{ g }] = await h.db.sql`select count(*)::int as g from meter_reading_gaps where meter_id = ${m.id}`;
      expect(g).toBeGreaterThan(0);
    }
  });

  it('solar production follows the day: nothing at night, a midday peak, never above the PV peak', () => {
    const spec: SimMeter = { serial: 'SIM-2', max_power_w: 20_000, interval_minutes: 15, pv_peak_w: 8_000, base_load_w: 0.0001, seed: 7 };
    const day = Math.floor(Date.now() / DAY) * DAY - 20 * DAY;
    const items = simulateReadings(spec, day, 96);
    const prod = items.map((i) => Number(i.reading.production_wh));
    expect(prod.slice(0, 12).every((p) => p === 0)).toBe(true); // 00:00–03:00 UTC
    expect(prod.slice(90).every((p) => p === 0)).toBe(true); // 22:30–24:00 UTC
    expect(Math.max(...prod.slice(40, 56))).toBeGreaterThan(500); // around noon
    expect(Math.max(...prod)).toBeLessThanOrEqual(8_000 / 4);
    // CSV of the same readings has a header and one line per reading
    expect(readingsCsv(items.map((i) => i.reading)).trim().split('\n')).toHaveLength(97);
  });
});
