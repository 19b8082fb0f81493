import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Sql } from './db.js';
import { MIGRATIONS_DIR } from './paths.js';

/** Migration files are `NNNN_name.sql`, applied in order of their number. */
const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+\.sql$/;
/** Advisory lock key shared by every kwx migrator ("kwx-migr" as bytes). */
export const MIGRATION_LOCK_KEY = 0x6b77782d6d696772n;

export interface Migration {
  id: string;
  sql: string;
  checksum: string;
}

export class MigrationError extends Error {
  constructor(
    readonly code: 'MIGRATION_EDITED' | 'MIGRATION_FAILED' | 'MIGRATION_BAD_NAME',
    message: string,
  ) {
    super(message);
    this.name = 'MigrationError';
  }
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
  const seen = new Set<string>();
  return files.map((file) => {
    const m = FILE_PATTERN.exec(file);
    if (m === null) throw new MigrationError('MIGRATION_BAD_NAME', `migration file ${file} must be named NNNN_lowercase_name.sql`);
    if (seen.has(m[1])) throw new MigrationError('MIGRATION_BAD_NAME', `two migrations share number ${m[1]}`);
    seen.add(m[1]);
    const text = readFileSync(join(dir, file), 'utf8');
    return { id: file.slice(0, -4), sql: text, checksum: createHash('sha256').update(text).digest('hex') };
  });
}

export interface MigrateResult {
  applied: string[];
  skipped: string[];
}

/**
 * Applies pending migrations, each in its own transaction, under a session advisory lock so
 * that concurrent starts apply each migration once. Re-running is a no-op; a migration whose
 * text changed after it was applied is refused (MIGRATION_EDITED) — write a new one instead.
 */
export async function migrate(sql: Sql, migrations: Migration[] = loadMigrations()): Promise<MigrateResult> {
  const conn = await sql.reserve();
  const result: MigrateResult = { applied: [], skipped: [] };
  try {
    await conn`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    await conn`
      create table if not exists schema_migrations (
        id text primary key,
        checksum text not null check (checksum ~ '^[0-9a-f]{64}$'),
        applied_at timestamptz not null default now()
      )`;
    const rows = await conn<{ id: string; checksum: string }[]>`select id, checksum from schema_migrations`;
    const applied = new Map(rows.map((r) => [r.id, r.checksum]));
    for (const m of migrations) {
      const prior = applied.get(m.id);
      if (prior !== undefined) {
        if (prior !== m.checksum) {
          throw new MigrationError(
            'MIGRATION_EDITED',
            `migration ${m.id} was edited after it was applied (checksum ${prior.slice(0, 12)}… in the database, ${m.checksum.slice(0, 12)}… on disk); restore it and add a new migration instead`,
          );
        }
        result.skipped.push(m.id);
        continue;
      }
      try {
        // The advisory lock is held by this session, so the transaction runs on the same reserved connection.
        await conn.unsafe('begin');
        await conn.unsafe(m.sql);
        await conn`insert into schema_migrations (id, checksum) values (${m.id}, ${m.checksum})`;
        await conn.unsafe('commit');
      } catch (err) {
        await conn.unsafe('rollback').catch(() => {});
        throw new MigrationError('MIGRATION_FAILED', `migration ${m.id} failed and was rolled back: ${(err as Error).message}`);
      }
      result.applied.push(m.id);
    }
    return result;
  } finally {
    await conn`select pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`.catch(() => {});
    conn.release();
  }
}
