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
