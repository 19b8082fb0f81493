import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { connect, type Sql } from '../../schema/db.js';
import { migrate } from '../../schema/migrate.js';

export interface TestDatabase {
  /** URL of the fresh database (migrated unless `migrated: false`). */
  url: string;
  name: string;
  sql: Sql;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

/** The server-level URL the run was given (DATABASE_URL on CI, embedded PostgreSQL elsewhere). */
export function serverUrl(): string {
  const url = inject('databaseUrl');
  if (url === undefined || url === '') throw new Error('no databaseUrl provided: is test/support/global-setup.ts configured?');
  return url;
}

export function databaseUrl(name: string): string {
  const u = new URL(serverUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Creates an empty database of its own for a test file, on the run's server, and (by default)
 * applies every migration. Call `drop()` in afterAll.
 */
export async function createTestDatabase(options: { migrated?: boolean; max?: number } = {}): Promise<TestDatabase> {
  const name = `kwx_t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const admin = connect(serverUrl(), { max: 1 });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const url = databaseUrl(name);
  const sql = connect(url, { max: options.max ?? 5 });
  if (options.migrated !== false) await migrate(sql);
  return {
    url,
    name,
    sql,
    drop: async () => {
      await sql.end({ timeout: 5 });
      const a = connect(serverUrl(), { max: 1 });
      try {
        await a.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await a.end({ timeout: 5 });
      }
    },
  };
}

/** The Redis URL for tests, or '' when the run has none. */
export function redisUrl(): string {
  return inject('redisUrl') ?? '';
}
