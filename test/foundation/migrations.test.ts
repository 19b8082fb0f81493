import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../schema/db.js';
import { loadMigrations, migrate, MigrationError, type Migration } from '../../schema/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

describe('migrations', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
  });
  afterAll(async () => {
    await db.drop();
  });

  it('are named NNNN_name.sql, numbered uniquely and in order', () => {
    const ms = loadMigrations();
    expect(ms.length).toBeGreaterThanOrEqual(1);
    expect(ms[0].id).toBe('0001_foundation');
    const ids = ms.map((m) => m.id);
    expect([...ids].sort()).toEqual(ids);
  });

  it('apply to an empty database, then re-running is a no-op', async () => {
    const first = await migrate(db.sql);
    expect(first.applied).toEqual(loadMigrations().map((m) => m.id));
    expect(first.skipped).toEqual([]);
    const tables = await db.sql<{ n: string }[]>`
      select count(*)::text as n from information_schema.tables
      where table_schema = 'public' and table_name in ('users', 'grid_zones', 'orders', 'trades', 'engine_journal', 'audit_log', 'bills')`;
    expect(tables[0].n).toBe('7');
    const second = await migrate(db.sql);
    expect(second.applied).toEqual([]);
    expect(second.skipped).toEqual(first.applied);
    const rows = await db.sql`select id from schema_migrations`;
    expect(rows.length).toBe(first.applied.length);
  });

  it('refuses an applied migration whose text was edited, naming it, and applies nothing after it', async () => {
    const ms = loadMigrations();
    const edited: Migration[] = ms.map((m, i) => (i === 0 ? { ...m, sql: m.sql + '\n-- edited', checksum: 'f'.repeat(64) } : m));
    const extra: Migration = { id: '9999_after_edit', sql: 'create table after_edit (x int)', checksum: 'a'.repeat(64) };
    const err = await migrate(db.sql, [...edited, extra]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).code).toBe('MIGRATION_EDITED');
    expect((err as MigrationError).message).toContain('0001_foundation');
    const [t] = await db.sql<{ reg: string | null }[]>`select to_regclass('after_edit')::text as reg`;
    expect(t.reg).toBeNull();
  });

  it('roll back a failing migration entirely and record nothing for it', async () => {
    const bad: Migration = { id: '9998_half_done', sql: 'create table half_done (x int); select 1/0;', checksum: 'b'.repeat(64) };
    const err = await migrate(db.sql, [...loadMigrations(), bad]).catch((e: unknown) => e);
    expect((err as MigrationError).code).toBe('MIGRATION_FAILED');
    const [t] = await db.sql<{ reg: string | null }[]>`select to_regclass('half_done')::text as reg`;
    expect(t.reg).toBeNull();
    const rec = await db.sql`select 1 from schema_migrations where id = '9998_half_done'`;
    expect(rec.length).toBe(0);
  });
});

describe('0017: engine_journal partitioned by zone, converted with its rows', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
  });
  afterAll(async () => {
    await db.drop();
  });

  it('moves every row of a journal written under 0016 into its zone\'s partition, keeps the key and the checks', async () => {
    const sql = db.sql;
    const all = loadMigrations();
    const at = all.findIndex((m) => m.id.startsWith('0017_'));
    expect(at).toBeGreaterThan(0);
    await migrate(sql, all.slice(0, at));
    const zone = async (c: string): Promise<number> =>
      Number((await sql`insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh)
        values (${c}, ${c}, 'EUR', 0.01, 1000, 0, 100, 1000) returning id`)[0].id);
    const a = await zone('ZA');
    const b = await zone('ZB');
    const bare = await zone('ZC');
    // 300 rows of zone a, 2 of zone b, with distinct payloads and timestamps.
    await sql`insert into engine_journal (zone_id, seq, kind, payload, ts)
      select ${a}, s, 1 + (s % 2), decode(lpad(to_hex(s), 8, '0'), 'hex'), timestamptz '2030-01-01' + s * interval '1 ms' from generate_series(1, 300) s`;
    await sql`insert into engine_journal (zone_id, seq, kind, payload, ts) values (${b}, 1, 1, '\\x01', '2030-01-02'), (${b}, 2, 2, '\\x02', '2030-01-03')`;
    const dump = async (): Promise<unknown[]> => [...(await sql`select zone_id::text, seq::text, kind, encode(payload, 'hex') as p, ts::text from engine_journal order by zone_id, seq`)];
    const before = await dump();
    expect(before.length).toBe(302);

    const r = await migrate(sql);
    expect(r.applied).toEqual(all.slice(at).map((m) => m.id));
    expect(await dump()).toEqual(before);
    const parts = await sql<{ part: string; bound: string; n: number }[]>`
      select c.relname as part, pg_get_expr(c.relpartbound, c.oid) as bound, (select count(*)::int from engine_journal j where j.tableoid = c.oid) as n
      from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'engine_journal'::regclass order by c.relname`;
    expect(parts).toEqual(
      [
        { part: `engine_journal_z${a}`, bound: `FOR VALUES IN ('${a}')`, n: 300 },
        { part: `engine_journal_z${b}`, bound: `FOR VALUES IN ('${b}')`, n: 2 },
        { part: `engine_journal_z${bare}`, bound: `FOR VALUES IN ('${bare}')`, n: 0 },
        { part: 'engine_journal_no_zone', bound: 'DEFAULT', n: 0 },
      ].sort((x, y) => (x.part < y.part ? -1 : 1)),
    );
    expect((await sql`select to_regclass('engine_journal_before_0017')::text as t`)[0].t).toBeNull();
    const code = (p: Promise<unknown>): Promise<string | null> => p.then(() => null, (e: { code?: string }) => e.code ?? 'no code');
    // The key, the seq check and the zone check hold on the converted table.
    expect(await code(sql`insert into engine_journal (zone_id, seq, kind, payload, ts) values (${a}, 300, 1, '\\x00', now())`)).toBe('23505');
    expect(await code(sql`insert into engine_journal (zone_id, seq, kind, payload, ts) values (${b}, 0, 1, '\\x00', now())`)).toBe('23514');
    expect(await code(sql`insert into engine_journal (zone_id, seq, kind, payload, ts) values (987654321, 1, 1, '\\x00', now())`)).toBe('23503');
    await sql`insert into engine_journal (zone_id, seq, kind, payload, ts) values (${a}, 301, 1, '\\x00', now()), (${bare}, 1, 1, '\\x00', now())`;
    expect(await code(sql`delete from grid_zones where id = ${a}`)).toBe('23503');
    // A zone created after the migration gets its partition.
    const d = await zone('ZD');
    await sql`insert into engine_journal (zone_id, seq, kind, payload, ts) values (${d}, 1, 1, '\\x00', now())`;
    expect((await sql`select count(*)::int as n from engine_journal_no_zone`)[0].n).toBe(0);
  });
});

describe('concurrent migrators', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
  });
  afterAll(async () => {
    await db.drop();
  });

  it('apply each migration exactly once when four start at the same time', async () => {
    const pools = Array.from({ length: 4 }, () => connect(db.url, { max: 2 }));
    try {
      // A slow extra migration widens the window in which the others would race.
      const slow: Migration = { id: '9997_slow', sql: 'select pg_sleep(0.3); create table slow_once (x int);', checksum: 'c'.repeat(64) };
      const results = await Promise.all(pools.map((p) => migrate(p, [...loadMigrations(), slow])));
      const appliedCounts = results.map((r) => r.applied.length);
      const total = loadMigrations().length + 1;
      expect(appliedCounts.filter((n) => n === total).length).toBe(1);
      expect(appliedCounts.filter((n) => n === 0).length).toBe(3);
      const rows = await db.sql<{ id: string }[]>`select id from schema_migrations order by id`;
      expect(rows.map((r) => r.id)).toEqual([...loadMigrations().map((m) => m.id), '9997_slow']);
    } finally {
      await Promise.all(pools.map((p) => p.end({ timeout: 5 })));
    }
  });
});
