// Rows the runtime needs in a fresh test database: zones, users, delivery intervals.
import type { Sql } from '../../schema/db.js';
import { mulberry32 as rng } from '../../bench/prng.js';
export { rng };

export interface Market {
  zone_ids: number[];
  user_ids: number[];
  /** Per zone: an interval whose gate is open now (opens in the past, closes in a day). */
  interval_ids: number[];
}

export async function seedMarket(sql: Sql, opts: { zones?: number; users?: number; capacity_wh?: number } = {}): Promise<Market> {
  const zone_ids: number[] = [];
  const interval_ids: number[] = [];
  for (let i = 0; i < (opts.zones ?? 1); i++) {
    const [z] = await sql<{ id: string }[]>`
      insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh, max_open_orders_per_user)
      values (${`Z${i}-${Math.random().toString(36).slice(2, 8).toUpperCase()}`}, ${`zone ${i}`}, 'EUR', 0.0001, 10000000, -1000, 100000, 1000000000, 1000000)
      returning id`;
    zone_ids.push(Number(z.id));
    const now = Date.now();
    const [iv] = await sql<{ id: string }[]>`
      insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
      values (${Number(z.id)}, ${new Date(now + 2 * 86_400_000)}, ${new Date(now + 2 * 86_400_000 + 900_000)},
              ${new Date(now - 60_000)}, ${new Date(now + 86_400_000)}, ${opts.capacity_wh ?? 1e15})
      returning id`;
    interval_ids.push(Number(iv.id));
  }
  const user_ids: number[] = [];
  for (let i = 0; i < (opts.users ?? 4); i++) {
    const [u] = await sql<{ id: string }[]>`
      insert into users (email, name, role) values (${`u${i}-${Math.random().toString(36).slice(2)}@kwx.test`}, ${`user ${i}`}, 'PROSUMER') returning id`;
    user_ids.push(Number(u.id));
  }
  return { zone_ids, user_ids, interval_ids };
}

/** Adds an interval to a zone with the given gate times (ms). */
export async function addInterval(sql: Sql, zone_id: number, gate_opens_at_ms: number, gate_closes_at_ms: number, capacity_wh = 1e12): Promise<number> {
  const starts = gate_closes_at_ms + 3_600_000 + Math.floor(Math.random() * 1e6) * 900_000;
  const [iv] = await sql<{ id: string }[]>`
    insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
    values (${zone_id}, ${new Date(starts)}, ${new Date(starts + 900_000)}, ${new Date(gate_opens_at_ms)}, ${new Date(gate_closes_at_ms)}, ${capacity_wh})
    returning id`;
  return Number(iv.id);
}

