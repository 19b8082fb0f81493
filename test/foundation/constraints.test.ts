import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

// Each case is one bad row and the SQLSTATE the schema must answer with:
// 23514 check_violation, 23505 unique_violation, 23502 not_null_violation, 23503 foreign_key_violation.
type Case = [name: string, sql: string, sqlstate: '23514' | '23505' | '23502' | '23503'];

describe('schema v1 constraints (0001_foundation)', () => {
  let db: TestDatabase;
  const ids = { user: 0, user2: 0, zone: 0, interval: 0, buy: 0, sell: 0, plan: 0, group: 0, meter: 0 };

  beforeAll(async () => {
    db = await createTestDatabase();
    const sql = db.sql;
    const one = async (q: Promise<{ id: string }[]>): Promise<number> => Number((await q)[0].id);
    ids.zone = await one(sql`
      insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh)
      values ('Z1', 'Zone one', 'EUR', 0.0001, 100000, -100, 10000, 1000000) returning id`);
    ids.user = await one(sql`insert into users (email, name, role) values ('a@x.io', 'A', 'PROSUMER') returning id`);
    ids.user2 = await one(sql`insert into users (email, name, role) values ('b@x.io', 'B', 'CONSUMER') returning id`);
    ids.interval = await one(sql`
      insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
      values (${ids.zone}, '2030-01-01T10:00Z', '2030-01-01T10:15Z', '2029-12-31T10:00Z', '2030-01-01T09:55Z', 25000) returning id`);
    await sql`insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, price_ticks, qty_wh, status, zone_seq, created_at, updated_at)
      values (1, ${ids.zone}, ${ids.interval}, ${ids.user2}, 'b1', 'BUY', 'LIMIT', 'ANY', 100, 1000, 'ACTIVE', 1, now(), now()),
             (2, ${ids.zone}, ${ids.interval}, ${ids.user}, 's1', 'SELL', 'LIMIT', 'SOLAR', 100, 1000, 'ACTIVE', 2, now(), now())`;
    ids.buy = 1;
    ids.sell = 2;
    ids.meter = await one(sql`insert into smart_meters (serial, user_id, zone_id, max_power_w) values ('M-0001', ${ids.user}, ${ids.zone}, 5000) returning id`);
    ids.plan = await one(sql`insert into tariff_plans (name, currency, valid_from) values ('Basic', 'EUR', '2030-01-01') returning id`);
    ids.group = await one(sql`insert into community_groups (name, zone_id, created_by) values ('Street', ${ids.zone}, ${ids.user}) returning id`);
  });
  afterAll(async () => {
    await db.drop();
  });

  it('accepts the valid fixture rows (so every rejection below is about the one bad value)', async () => {
    const [n] = await db.sql<{ n: string }[]>`select count(*)::text as n from orders`;
    expect(n.n).toBe('2');
  });

  const z = (): number => ids.zone;
  const cases = (): Case[] => [
    ['users.role outside the four roles', `insert into users (email, name, role) values ('c@x.io', 'C', 'TRADER')`, '23514'],
    ['users.email is unique case-insensitively', `insert into users (email, name, role) values ('A@X.IO', 'A2', 'CONSUMER')`, '23505'],
    ['users.email must look like an address', `insert into users (email, name, role) values ('nobody', 'N', 'CONSUMER')`, '23514'],
    ['users.name is required', `insert into users (email, role) values ('d@x.io', 'CONSUMER')`, '23502'],
    ['api_keys HMAC key needs a secret hash', `insert into api_keys (id, user_id, algorithm) values ('key_abcdef12', ${ids.user}, 'HMAC_SHA256')`, '23514'],
    ['api_keys.user_id must exist', `insert into api_keys (id, user_id, algorithm, secret_hash) values ('key_abcdef13', 999999, 'HMAC_SHA256', '\\x00')`, '23503'],
    ['grid_zones.status enum', `insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh, status) values ('Z2', 'z', 'EUR', 0.01, 1, 0, 1, 1, 'CLOSED')`, '23514'],
    ['grid_zones.code is unique', `insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh) values ('Z1', 'z', 'EUR', 0.01, 1, 0, 1, 1)`, '23505'],
    ['grid_zones.tick_size is positive', `insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh) values ('Z3', 'z', 'EUR', 0, 1, 0, 1, 1)`, '23514'],
    ['grid_zones.capacity_w is positive', `insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh) values ('Z4', 'z', 'EUR', 0.01, 0, 0, 1, 1)`, '23514'],
    ['grid_zones price band min ≤ max', `insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh) values ('Z5', 'z', 'EUR', 0.01, 1, 10, 1, 1)`, '23514'],
    ['grid_zones.currency is three capitals', `insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh) values ('Z6', 'z', 'eu1', 0.01, 1, 0, 1, 1)`, '23514'],
    ['delivery_intervals end after start', `insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh) values (${z()}, '2030-01-02T10:00Z', '2030-01-02T10:00Z', '2030-01-01T10:00Z', '2030-01-02T09:55Z', 1)`, '23514'],
    ['delivery_intervals gate closes before delivery starts', `insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh) values (${z()}, '2030-01-02T10:00Z', '2030-01-02T10:15Z', '2030-01-01T10:00Z', '2030-01-02T10:05Z', 1)`, '23514'],
    ['delivery_intervals one per zone and start', `insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh) values (${z()}, '2030-01-01T10:00Z', '2030-01-01T10:15Z', '2029-12-31T10:00Z', '2030-01-01T09:55Z', 1)`, '23505'],
    ['energy_sources.kind enum', `insert into energy_sources (user_id, zone_id, kind, capacity_w) values (${ids.user}, ${z()}, 'COAL', 1000)`, '23514'],
    ['energy_sources.capacity_w positive', `insert into energy_sources (user_id, zone_id, kind, capacity_w) values (${ids.user}, ${z()}, 'SOLAR', -5)`, '23514'],
    ['smart_meters.serial is unique', `insert into smart_meters (serial, user_id, zone_id, max_power_w) values ('M-0001', ${ids.user}, ${z()}, 5000)`, '23505'],
    ['smart_meters.status enum', `insert into smart_meters (serial, user_id, zone_id, max_power_w, status) values ('M-0002', ${ids.user}, ${z()}, 5000, 'BROKEN')`, '23514'],
    ['devices.kind enum', `insert into devices (serial, user_id, kind) values ('D-0001', ${ids.user}, 'TOASTER')`, '23514'],
    ['orders: a SELL cannot have source ANY', `insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, price_ticks, qty_wh, status, zone_seq, created_at, updated_at) values (10, ${z()}, ${ids.interval}, ${ids.user}, 'x', 'SELL', 'LIMIT', 'ANY', 1, 1, 'ACTIVE', 3, now(), now())`, '23514'],
    ['orders.qty_wh positive', `insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, price_ticks, qty_wh, status, zone_seq, created_at, updated_at) values (11, ${z()}, ${ids.interval}, ${ids.user}, 'y', 'BUY', 'LIMIT', 'ANY', 1, 0, 'ACTIVE', 3, now(), now())`, '23514'],
    ['orders.filled_wh ≤ qty_wh', `insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, price_ticks, qty_wh, filled_wh, status, zone_seq, created_at, updated_at) values (12, ${z()}, ${ids.interval}, ${ids.user}, 'z', 'BUY', 'LIMIT', 'ANY', 1, 5, 6, 'PARTIALLY_FILLED', 3, now(), now())`, '23514'],
    ['orders.order_type enum', `insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, price_ticks, qty_wh, status, zone_seq, created_at, updated_at) values (13, ${z()}, ${ids.interval}, ${ids.user}, 'w', 'BUY', 'STOP', 'ANY', 1, 5, 'ACTIVE', 3, now(), now())`, '23514'],
    ['orders: a cancelled order carries its reason', `insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, price_ticks, qty_wh, status, zone_seq, created_at, updated_at) values (14, ${z()}, ${ids.interval}, ${ids.user}, 'v', 'BUY', 'LIMIT', 'ANY', 1, 5, 'CANCELLED', 3, now(), now())`, '23514'],
    ['orders: client order id unique per user among open orders', `insert into orders (id, zone_id, interval_id, user_id, client_order_id, side, order_type, source, price_ticks, qty_wh, status, zone_seq, created_at, updated_at) values (15, ${z()}, ${ids.interval}, ${ids.user2}, 'b1', 'BUY', 'LIMIT', 'ANY', 1, 5, 'ACTIVE', 3, now(), now())`, '23505'],
    ['trades: buyer and seller differ', `insert into trades (id, zone_id, interval_id, buy_order_id, sell_order_id, buyer_id, seller_id, maker_side, source, price_ticks, qty_wh, zone_seq, executed_at) values (1, ${z()}, ${ids.interval}, 1, 2, ${ids.user}, ${ids.user}, 'SELL', 'SOLAR', 100, 10, 4, now())`, '23514'],
    ['trades.source is a real source, never ANY', `insert into trades (id, zone_id, interval_id, buy_order_id, sell_order_id, buyer_id, seller_id, maker_side, source, price_ticks, qty_wh, zone_seq, executed_at) values (2, ${z()}, ${ids.interval}, 1, 2, ${ids.user2}, ${ids.user}, 'SELL', 'ANY', 100, 10, 4, now())`, '23514'],
    ['trades.qty_wh positive', `insert into trades (id, zone_id, interval_id, buy_order_id, sell_order_id, buyer_id, seller_id, maker_side, source, price_ticks, qty_wh, zone_seq, executed_at) values (3, ${z()}, ${ids.interval}, 1, 2, ${ids.user2}, ${ids.user}, 'SELL', 'SOLAR', 100, 0, 4, now())`, '23514'],
    ['trades.status enum', `insert into trades (id, zone_id, interval_id, buy_order_id, sell_order_id, buyer_id, seller_id, maker_side, source, price_ticks, qty_wh, zone_seq, executed_at, status) values (4, ${z()}, ${ids.interval}, 1, 2, ${ids.user2}, ${ids.user}, 'SELL', 'SOLAR', 100, 5, 4, now(), 'PAID')`, '23514'],
    ['trades reference real orders', `insert into trades (id, zone_id, interval_id, buy_order_id, sell_order_id, buyer_id, seller_id, maker_side, source, price_ticks, qty_wh, zone_seq, executed_at) values (5, ${z()}, ${ids.interval}, 77, 2, ${ids.user2}, ${ids.user}, 'SELL', 'SOLAR', 100, 5, 4, now())`, '23503'],
    ['engine_journal (zone, seq) is unique', `insert into engine_journal (zone_id, seq, kind, payload, ts) values (${z()}, 1, 1, '\\x00', now()), (${z()}, 1, 1, '\\x00', now())`, '23505'],
    ['engine_journal zone exists (no partition for it, multi-row)', `insert into engine_journal (zone_id, seq, kind, payload, ts) values (${z()}, 900, 1, '\\x00', now()), (987654321, 1, 1, '\\x00', now())`, '23503'],
    ['engine_journal seq positive', `insert into engine_journal (zone_id, seq, kind, payload, ts) values (${z()}, 0, 1, '\\x00', now())`, '23514'],
    ['community_members.role enum', `insert into community_members (group_id, user_id, role) values (${ids.group}, ${ids.user2}, 'OWNER')`, '23514'],
    ['community_groups name unique per zone', `insert into community_groups (name, zone_id, created_by) values ('Street', ${z()}, ${ids.user2})`, '23505'],
    ['price_history low ≤ open/close ≤ high', `insert into price_history (zone_id, interval_id, bucket_start, open_ticks, high_ticks, low_ticks, close_ticks, volume_wh, trade_count) values (${z()}, ${ids.interval}, now(), 50, 40, 30, 35, 10, 1)`, '23514'],
    ['price_alerts.direction enum', `insert into price_alerts (user_id, zone_id, target_price_ticks, direction) values (${ids.user}, ${z()}, 100, 'SIDEWAYS')`, '23514'],
    ['notifications.kind enum', `insert into notifications (user_id, kind, title) values (${ids.user}, 'SPAM', 't')`, '23514'],
    ['compliance_rules one per rule and zone', `insert into compliance_rules (zone_id, rule) values (${z()}, 'PRICE_BAND'), (${z()}, 'PRICE_BAND')`, '23505'],
    ['compliance_rules.rule enum', `insert into compliance_rules (zone_id, rule) values (${z()}, 'ANYTHING')`, '23514'],
    ['platform_config key format', `insert into platform_config (key, value) values ('Bad Key!', '1')`, '23514'],
    ['fee_schedules.fee_bps within 0..10000', `insert into fee_schedules (fee_bps) values (10001)`, '23514'],
    ['fee_schedules.fee_per_kwh_minor not negative', `insert into fee_schedules (fee_per_kwh_minor) values (-1)`, '23514'],
    ['tariff_slabs end after start', `insert into tariff_slabs (plan_id, from_wh, to_wh, rate_per_kwh_minor) values (${ids.plan}, 100, 50, 1)`, '23514'],
    ['tariff_tou_rates minutes within a day', `insert into tariff_tou_rates (plan_id, name, days_mask, start_minute, end_minute, rate_per_kwh_minor) values (${ids.plan}, 'peak', 31, 1000, 1500, 1)`, '23514'],
    ['bills one per user and period', `insert into bills (user_id, plan_id, period_start, period_end, currency, total_minor) values (${ids.user}, ${ids.plan}, '2030-01-01', '2030-02-01', 'EUR', 0), (${ids.user}, ${ids.plan}, '2030-01-01', '2030-02-01', 'EUR', 0)`, '23505'],
    ['bills.status enum', `insert into bills (user_id, plan_id, period_start, period_end, currency, total_minor, status) values (${ids.user}, ${ids.plan}, '2030-03-01', '2030-04-01', 'EUR', 0, 'LOST')`, '23514'],
  ];

  it('rejects each bad row with the right constraint', async () => {
    const results: string[] = [];
    for (const [name, text, sqlstate] of cases()) {
      const err = await db.sql.unsafe(text).then(
        () => null,
        (e: { code?: string }) => e,
      );
      results.push(`${name}: ${err === null ? 'ACCEPTED' : err.code === sqlstate ? 'ok' : `got ${err.code}`}`);
    }
    expect(results.filter((r) => !r.endsWith(': ok'))).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(40);
  });
  it('engine_journal names an existing zone: for COPY too; a journaled zone cannot be deleted (0016, partitions since 0017)', async () => {
    const sql = db.sql;
    const code = (p: Promise<unknown>): Promise<string | null> => p.then(() => null, (e: { code?: string }) => e.code ?? 'no code');
    const zone = async (c: string): Promise<number> =>
      Number((await sql`insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh)
        values (${c}, ${c}, 'EUR', 0.01, 1000, 0, 100, 1000) returning id`)[0].id);
    const journaled = await zone('JRN');
    const bare = await zone('BARE');
    const copyRows = async (lines: string): Promise<void> => {
      const w = await sql`copy engine_journal (zone_id, seq, kind, payload, ts) from stdin`.writable();
      await new Promise<void>((resolve, reject) => {
        w.on('error', reject);
        w.on('finish', resolve);
        w.end(lines);
      });
    };
    // One unknown zone among good rows: the whole statement fails, nothing lands (its row has no
    // partition: the default one refuses it). A COPY routes rows the same way.
    expect(await code(sql`insert into engine_journal (zone_id, seq, kind, payload, ts)
      select z, 1, 1, '\\x00', now() from unnest(${[journaled, 987654321]}::bigint[]) as z`)).toBe('23503');
    expect((await sql`select count(*)::int as n from engine_journal where zone_id = ${journaled}`)[0].n).toBe(0);
    await copyRows(`${journaled}\t1\t1\t\\\\x00\t2030-01-01T00:00Z\n${journaled}\t2\t1\t\\\\x00\t2030-01-01T00:00Z\n`);
    expect((await sql`select count(*)::int as n from engine_journal where zone_id = ${journaled}`)[0].n).toBe(2);
    expect(await code(sql`delete from grid_zones where id = ${journaled}`)).toBe('23503');
    expect(await code(sql`update grid_zones set name = 'renamed' where id = ${journaled}`)).toBeNull();
    expect(await code(sql`delete from grid_zones where id = ${bare}`)).toBeNull();
    // The deleted zone's partition went with it: its rows are refused now.
    expect(await code(sql`insert into engine_journal (zone_id, seq, kind, payload, ts) values (${bare}, 1, 1, '\\x00', now())`)).toBe('23503');
    // Even with triggers off (session_replication_role = replica) the default partition holds nothing.
    const refused = await sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      return code(tx`insert into engine_journal (zone_id, seq, kind, payload, ts) values (987654321, 1, 1, '\\x00', now())`);
    }).catch((e: { code?: string }) => e.code ?? 'no code');
    expect(refused).toBe('23514');
    expect(await code(sql`update grid_zones set id = 987654 where id = ${journaled}`)).not.toBeNull();
  });

  it('a zone delete racing the first journal rows of the zone waits for them and is refused (0017)', async () => {
    const sql = db.sql;
    const code = (p: Promise<unknown>): Promise<string | null> => p.then(() => null, (e: { code?: string }) => e.code ?? 'no code');
    const [{ id }] = await sql<{ id: string }[]>`insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh)
      values ('RACE', 'race', 'EUR', 0.01, 1000, 0, 100, 1000) returning id`;
    let inserted!: () => void;
    const didInsert = new Promise<void>((r) => (inserted = r));
    let commit!: () => void;
    const mayCommit = new Promise<void>((r) => (commit = r));
    const writer = sql.begin(async (tx) => {
      await tx`insert into engine_journal (zone_id, seq, kind, payload, ts) values (${id}, 1, 1, '\\x00', now())`;
      inserted();
      await mayCommit;
    });
    await didInsert;
    let settled = false;
    const del = code(sql`delete from grid_zones where id = ${id}`).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false); // waiting for the uncommitted journal row's transaction
    commit();
    await writer;
    expect(await del).toBe('23503');
    expect((await sql`select count(*)::int as n from engine_journal where zone_id = ${id}`)[0].n).toBe(1);
  });
});
