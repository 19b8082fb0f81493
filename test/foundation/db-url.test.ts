// A libpq-style URL naming a unix socket directory (?host=/dir) reaches the server through it, for
// every pool kwx opens (schema/db.ts connect, the runtime's connectNoDelay), not only the runtime's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, pgTarget, type Sql } from '../../schema/db.js';
import { connectNoDelay } from '../../engine/runtime/pg.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

describe('pgTarget', () => {
  it('turns ?host=/dir into postgres.js path to the socket file and drops the parameter', () => {
    expect(pgTarget('postgres://kwx@/exchange?host=/var/run/postgresql')).toMatchObject({
      url: 'postgres://kwx@localhost/exchange',
      path: '/var/run/postgresql/.s.PGSQL.5432',
    });
    expect(pgTarget('postgres://kwx@db:6543/x?host=/tmp&sslmode=disable')).toMatchObject({ url: 'postgres://kwx@db:6543/x?sslmode=disable', path: '/tmp/.s.PGSQL.6543' });
  });

  it('leaves TCP URLs alone (a host parameter that is not a directory too)', () => {
    for (const url of ['postgres://u@127.0.0.1:5432/d', 'postgres://u@[::1]:5433/d', 'postgres://u@h/d?host=h2']) {
      const t = pgTarget(url);
      expect(t.url).toBe(url);
      expect(t.path).toBeUndefined();
    }
    expect(pgTarget('postgres://u@[::1]:5433/d')).toMatchObject({ host: '::1', port: 5433 });
  });
});

describe('a unix socket URL', () => {
  let db: TestDatabase;
  let socketUrl: string;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false, max: 1 });
    const [{ unix_socket_directories: dirs }] = await db.sql<{ unix_socket_directories: string }[]>`show unix_socket_directories`;
    const dir = dirs.split(',')[0].trim();
    expect(dir.startsWith('/')).toBe(true);
    const u = new URL(db.url);
    u.hostname = '';
    u.searchParams.set('host', dir);
    socketUrl = u.toString();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('reaches the server through the socket with connect() and with the runtime connections', async () => {
    for (const sql of [connect(socketUrl, { max: 1 }), connectNoDelay(socketUrl)] as Sql[]) {
      try {
        const [row] = await sql<{ db: string; addr: string | null }[]>`select current_database() as db, inet_client_addr()::text as addr`;
        expect(row.db).toBe(new URL(db.url).pathname.slice(1));
        expect(row.addr).toBeNull(); // null = a unix-socket session
      } finally {
        await sql.end({ timeout: 1 });
      }
    }
  });
});
