import type { Sql } from './db.js';

export interface DemoSeed {
  zone_id: number;
  interval_ids: number[];
  users: { operator: number; prosumer: number; consumer: number };
}

const HOUR_MS = 3_600_000;

/**
 * Seeds a demo zone ("DEMO-1", EUR, tick 0.0001 EUR/kWh, 500 kW), an operator, a solar
 * prosumer with a meter and a consumer, and the next `hours` hours of 15-minute delivery
 * intervals. Idempotent: running it again adds only intervals that are missing.
 */
export async function seedDemo(sql: Sql, now = new Date(), hours = 24): Promise<DemoSeed> {
  return sql.begin(async (tx) => {
    const [zone] = await tx<{ id: string }[]>`
      insert into grid_zones (code, name, currency, currency_minor_units, tick_size, lot_wh, capacity_w,
                              price_band_min_ticks, price_band_max_ticks, min_order_wh, max_order_wh,
                              max_open_orders_per_user, interval_minutes, gate_open_lead_minutes, gate_close_lead_minutes)
      values ('DEMO-1', 'Demo zone', 'EUR', 2, 0.0001, 1, 500000, -5000, 10000, 100, 100000000, 200, 15, 1440, 5)
      on conflict (code) do update set code = excluded.code
      returning id`;
    const zoneId = Number(zone.id);
    const user = async (email: string, name: string, role: string): Promise<number> => {
      const [u] = await tx<{ id: string }[]>`
        insert into users (email, name, role, home_zone_id) values (${email}, ${name}, ${role}, ${zoneId})
        on conflict (lower(email)) do update set name = excluded.name
        returning id`;
      return Number(u.id);
    };
    const operator = await user('operator@demo.kwx', 'Demo operator', 'GRID_OPERATOR');
    const prosumer = await user('solar@demo.kwx', 'Demo rooftop solar', 'PROSUMER');
    const consumer = await user('home@demo.kwx', 'Demo household', 'CONSUMER');
    await tx`
      insert into energy_sources (user_id, zone_id, kind, capacity_w)
      select ${prosumer}, ${zoneId}, 'SOLAR', 8000
      where not exists (select 1 from energy_sources where user_id = ${prosumer} and zone_id = ${zoneId})`;
    await tx`
      insert into smart_meters (serial, user_id, zone_id, max_power_w)
      values ('DEMO-METER-0001', ${prosumer}, ${zoneId}, 10000), ('DEMO-METER-0002', ${consumer}, ${zoneId}, 15000)
      on conflict (serial) do nothing`;
    const first = Math.ceil(now.getTime() / (15 * 60_000)) * 15 * 60_000;
    const starts = Array.from({ length: hours * 4 }, (_, i) => new Date(first + i * 15 * 60_000).toISOString());
    // capacity = 500 kW × 0.25 h = 125,000 Wh per interval
    const rows = await tx<{ id: string }[]>`
      insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh, status)
      select ${zoneId}, s, s + interval '15 minutes', s - interval '24 hours', s - interval '5 minutes', 125000, 'SCHEDULED'
      from unnest(${starts}::timestamptz[]) as s
      on conflict (zone_id, starts_at) do update set zone_id = excluded.zone_id
      returning id`;
    return { zone_id: zoneId, interval_ids: rows.map((r) => Number(r.id)), users: { operator, prosumer, consumer } };
  }) as Promise<DemoSeed>;
}

export const DEMO_HORIZON_MS = 24 * HOUR_MS;
