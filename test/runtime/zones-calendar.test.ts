// A zone created while kwx runs becomes tradable without a restart (runtime.addZone), and every
// zone keeps its delivery intervals written ahead (schedule.ts), so trading never runs out of
// intervals once the seeded ones have passed.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startRuntime, type Runtime } from '../../engine/runtime/runtime.js';
import { scheduleIntervals } from '../../engine/runtime/schedule.js';
import { decodeCommand } from '../../engine/runtime/codec.js';
import { seedMarket, type Market } from './fixtures.js';

let db: TestDatabase;
let market: Market;
let rt: Runtime;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const HOUR = 3_600_000;

async function newZone(code: string, extra: { interval_minutes?: number; open_lead?: number; close_lead?: number; capacity_w?: number } = {}): Promise<number> {
  const [z] = await db.sql<{ id: string }[]>`
    insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh,
                            interval_minutes, gate_open_lead_minutes, gate_close_lead_minutes)
    values (${code}, ${code}, 'EUR', 0.0001, ${extra.capacity_w ?? 1_000_000}, 0, 100000, 1000000000,
            ${extra.interval_minutes ?? 15}, ${extra.open_lead ?? 60}, ${extra.close_lead ?? 5})
    returning id`;
  return Number(z.id);
}

beforeAll(async () => {
  db = await createTestDatabase();
  market = await seedMarket(db.sql, { zones: 1, users: 2 });
});
afterAll(async () => {
  await rt?.stop();
  await db?.drop();
});

test('the calendar writes each interval whose gate opens within the horizon and has not closed: aligned, sized from the zone, idempotent, never touching existing rows', async () => {
  const z = await newZone('CAL-15', { interval_minutes: 15, open_lead: 60, close_lead: 5, capacity_w: 1_000_003 });
  const z60 = await newZone('CAL-60', { interval_minutes: 60, open_lead: 120, close_lead: 10, capacity_w: 500 });
  // 10:07:30 UTC: the 10:15 interval's gate closes 10:10 (still open), 10:00's has passed
  const now = Date.UTC(2031, 0, 1, 10, 7, 30);
  // an operator's own interval at 11:00 with another capacity stays as it is
  await db.sql`insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
    values (${z}, ${new Date(Date.UTC(2031, 0, 1, 11))}, ${new Date(Date.UTC(2031, 0, 1, 11, 15))}, ${new Date(Date.UTC(2031, 0, 1, 9))}, ${new Date(Date.UTC(2031, 0, 1, 10, 55))}, 7)`;
  const created = await scheduleIntervals(db.sql, now, 2 * HOUR, [z, z60]);
  const rows = await db.sql<{ zone_id: string; starts_at: Date; ends_at: Date; gate_opens_at: Date; gate_closes_at: Date; capacity_wh: string }[]>`
    select zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh from delivery_intervals where zone_id in (${z}, ${z60}) order by zone_id, starts_at`;
  const of = (id: number) => rows.filter((r) => Number(r.zone_id) === id);
  // 15-minute zone: starts 10:15 … whose gate (start − 60 min) opens before 12:07:30 → starts ≤ 13:00
  const starts15 = of(z).map((r) => r.starts_at.toISOString().slice(11, 16));
  expect(starts15[0]).toBe('10:15');
  expect(starts15.at(-1)).toBe('13:00');
  expect(starts15).toHaveLength(12);
  for (const r of of(z)) {
    expect(r.starts_at.getTime() % (15 * 60_000)).toBe(0);
    expect(r.ends_at.getTime() - r.starts_at.getTime()).toBe(15 * 60_000);
    // 1,000,003 W × 15 min = 250,000.75 Wh → 250,000 (a limit rounds down), except the operator's row
    expect(r.capacity_wh).toBe(r.starts_at.getUTCHours() === 11 && r.starts_at.getUTCMinutes() === 0 ? '7' : '250000');
  }
  expect(of(z).filter((r) => r.starts_at.getTime() - r.gate_opens_at.getTime() !== HOUR)).toHaveLength(1); // the operator's row (gate opened 09:00)
  expect(of(z).every((r) => r.starts_at.getTime() - r.gate_closes_at.getTime() === 5 * 60_000)).toBe(true);
  // 60-minute zone: 11:00 (gate closes 10:50) … 14:00 (gate opens 12:00 < 12:07:30); 500 W × 1 h = 500 Wh
  expect(of(z60).map((r) => r.starts_at.toISOString().slice(11, 16))).toEqual(['11:00', '12:00', '13:00', '14:00']);
  expect(of(z60).every((r) => r.capacity_wh === '500')).toBe(true);
  expect(created).toBe(11 + 4);
  // again: nothing new; later: only the new slots
  const [{ max: maxBefore }] = await db.sql<{ max: string }[]>`select max(id)::text as max from delivery_intervals`;
  expect(await scheduleIntervals(db.sql, now, 2 * HOUR, [z, z60])).toBe(0);
  // a pass that finds everything in place draws no identity values (it runs every few seconds)
  const [{ id: probe }] = await db.sql<{ id: string }[]>`insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
    values (${z}, '2040-01-01T00:00Z', '2040-01-01T00:15Z', '2039-12-31T23:00Z', '2039-12-31T23:55Z', 1) returning id::text as id`;
  expect(BigInt(probe)).toBe(BigInt(maxBefore) + 1n);
  await db.sql`delete from delivery_intervals where id = ${probe}`;
  expect(await scheduleIntervals(db.sql, now + 15 * 60_000, 2 * HOUR, [z])).toBe(1);
  await expect(scheduleIntervals(db.sql, now, 0, [z])).rejects.toThrow(RangeError);
});

test('a zone created after start-up is run at once: configured from grid_zones as its first journal row, its intervals written and opened, orders trade', async () => {
  rt = await startRuntime({ database_url: db.url, workers: 2, clock_tick_ms: 50, intervals_refresh_ms: 100, schedule_intervals_ahead_ms: 2 * HOUR, zones: undefined });
  const before = rt.status().zones.map((z) => z.zone_id);
  expect(before).toContain(market.zone_ids[0]);
  const zone = await newZone('LATE-1', { interval_minutes: 15, open_lead: 120, close_lead: 5 });
  expect(before).not.toContain(zone);
  expect(await rt.submit(zone, { type: 'CANCEL', order_id: 1, user_id: market.user_ids[0] })).toMatchObject({ ok: false, code: 'UNKNOWN_ZONE' });

  expect(await rt.addZone(zone)).toBe(true);
  expect(await rt.addZone(zone)).toBe(true); // idempotent
  expect(rt.status().zones.find((z) => z.zone_id === zone)).toMatchObject({ status: 'READY' });
  await expect(rt.addZone(987_654)).rejects.toThrow(/not in grid_zones/);

  // its first journal row configures it from grid_zones
  const [first] = await db.sql<{ seq: string; payload: Buffer }[]>`select seq, payload from engine_journal where zone_id = ${zone} order by seq limit 1`;
  expect(Number(first.seq)).toBe(1);
  expect(decodeCommand(first.payload, zone, 0)).toMatchObject({ type: 'CONFIGURE_ZONE', zone_id: zone, band_min_ticks: 0, band_max_ticks: 100000 });

  // the calendar wrote its intervals; the clock opens those whose gate is open
  const [iv] = await db.sql<{ id: string }[]>`select id from delivery_intervals where zone_id = ${zone} and gate_opens_at <= now() and gate_closes_at > now() order by starts_at limit 1`;
  expect(iv).toBeDefined();
  const interval_id = Number(iv.id);
  for (let i = 0; i < 100 && !(await rt.dump(zone)).state.intervals.some((x) => x.interval_id === interval_id); i++) await sleep(50);
  const [u1, u2] = market.user_ids;
  const sell = await rt.submit(zone, { type: 'PLACE', user_id: u1, client_order_id: 's', zone_id: zone, interval_id, side: 'SELL', source: 'SOLAR', order_type: 'LIMIT', price_ticks: 1000, qty_wh: 500 });
  expect(sell).toMatchObject({ ok: true });
  const buy = await rt.submit(zone, { type: 'PLACE', user_id: u2, client_order_id: 'b', zone_id: zone, interval_id, side: 'BUY', source: 'ANY', order_type: 'LIMIT', price_ticks: 1000, qty_wh: 500 });
  expect(buy.ok && buy.events.some((e) => e.type === 'FILL' && e.qty_wh === 500)).toBe(true);
  // and it survives a restart like any zone
  await rt.stop();
  rt = await startRuntime({ database_url: db.url, workers: 1, lifecycle: false });
  expect(rt.status().zones.find((z) => z.zone_id === zone)).toMatchObject({ status: 'READY' });
  expect((await rt.dump(zone)).state.config).toMatchObject({ band_max_ticks: 100000 });
  // a runtime started for other zones only does not take it
  await rt.stop();
  rt = await startRuntime({ database_url: db.url, workers: 1, lifecycle: false, zones: [market.zone_ids[0]] });
  expect(await rt.addZone(zone)).toBe(false);
  expect(rt.status().zones.map((z) => z.zone_id)).toEqual([market.zone_ids[0]]);
});
