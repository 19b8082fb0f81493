// Admin writes survive a PostgreSQL connection that drops mid-request: the process keeps running
// (no postgres.js ROLLBACK on a dead socket, porsager/postgres#1208), the request gets a clear
// 503 EXCHANGE_UNAVAILABLE, the change and its audit row are there together or not at all, and
// the admin API works again once the database is reachable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../../schema/db.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startProxy, type CuttableProxy } from '../support/proxy.js';
import { startExchange, type Exchange } from './harness.js';

let db: TestDatabase;
let proxy: CuttableProxy;
let proxied: Sql;
let ex: Exchange;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown): void => {
  uncaught.push(err);
};

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  db = await createTestDatabase();
  proxy = await startProxy(db.url);
  proxied = connect(proxy.url, { max: 4 });
  // The gateway (auth, admin writes, catalog) talks to PostgreSQL through the cuttable proxy.
  ex = await startExchange({ db, extra: { sql: proxied } });
});

afterAll(async () => {
  await ex?.stop();
  await proxied?.end({ timeout: 2 }).catch(() => {});
  await proxy?.close();
  await db?.drop();
  process.off('uncaughtException', onUncaught);
});

/** Waits until a statement of this database is blocked on a lock (the admin write, behind our row lock). */
async function blockedOnLock(sql: Sql, like: string): Promise<void> {
  for (;;) {
    const [r] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock' and query like ${like}`;
    if (r.n > 0) return;
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** Waits until no statement like this one runs any more. */
async function finished(sql: Sql, like: string): Promise<void> {
  for (;;) {
    const [r] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and state = 'active' and query like ${like} and pid <> pg_backend_pid()`;
    if (r.n === 0) return;
    await new Promise((res) => setTimeout(res, 20));
  }
}

describe('admin writes and a dropped database connection', () => {
  it('a zone update whose connection is cut mid-statement answers 503 EXCHANGE_UNAVAILABLE, kwx keeps running, change and audit row stay together', async () => {
    const zone_id = ex.zone_id;
    // Hold the zone's row lock on a direct connection so the admin statement is in flight, blocked.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = db.sql.begin(async (tx) => {
      await tx`select id from grid_zones where id = ${zone_id} for update`;
      locked();
      await released;
    });
    await isLocked;

    const request = ex.admin(ex.actors.operator, 'PATCH', `/admin/zones/${zone_id}`, { max_open_orders_per_user: 77 });
    await blockedOnLock(db.sql, '%update grid_zones%');
    await proxy.cut();
    const r = await request;
    expect(r.status).toBe(503);
    expect(r.body.code).toBe('EXCHANGE_UNAVAILABLE');
    expect(r.body.message).toMatch(/database connection was lost/);

    // The process is alive: WebSocket sessions still answer.
    const a = await ex.anon();
    expect(await a.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    a.close();

    // The blocked statement finishes on the server (or not) once the lock goes: atomically.
    release();
    await holder;
    await finished(db.sql, '%update grid_zones%');
    const [z] = await db.sql<{ max_open_orders_per_user: number }[]>`select max_open_orders_per_user from grid_zones where id = ${zone_id}`;
    const audits = await db.sql`select after from audit_log where action = 'zone.update' and entity_id = ${String(zone_id)}`;
    if (z.max_open_orders_per_user === 77) {
      expect(audits).toHaveLength(1);
      expect(audits[0].after).toMatchObject({ max_open_orders_per_user: 77 });
    } else {
      expect(audits).toHaveLength(0);
    }

    // Back online: the same admin API works again.
    await proxy.restore();
    let ok: { status: number; body: any } | null = null; // eslint-disable-line @typescript-eslint/no-explicit-any
    for (let i = 0; i < 50 && ok?.status !== 200; i++) {
      ok = await ex.admin(ex.actors.operator, 'PATCH', `/admin/zones/${zone_id}`, { max_open_orders_per_user: 88 });
      if (ok.status !== 200) await new Promise((res) => setTimeout(res, 50));
    }
    expect(ok).toMatchObject({ status: 200, body: { after: { max_open_orders_per_user: 88 } } });
    expect(uncaught).toEqual([]);
  });

  it('a key creation while the database is unreachable answers 503 and writes nothing; afterwards it works', async () => {
    // Log in a fresh admin signature path first (the key lookup goes through the proxy too).
    await proxy.cut();
    const r = await ex.admin(ex.actors.admin, 'POST', `/admin/users/${ex.actors.carol.user_id}/keys`, { algorithm: 'HMAC_SHA256', label: 'outage' });
    expect(r.status).toBe(503);
    expect(r.body.code).toBe('EXCHANGE_UNAVAILABLE');
    const [n] = await db.sql<{ n: number }[]>`select count(*)::int as n from api_keys where label = 'outage'`;
    expect(n.n).toBe(0);
    await proxy.restore();
    let ok: { status: number; body: any } | null = null; // eslint-disable-line @typescript-eslint/no-explicit-any
    for (let i = 0; i < 50 && ok?.status !== 201; i++) {
      ok = await ex.admin(ex.actors.admin, 'POST', `/admin/users/${ex.actors.carol.user_id}/keys`, { algorithm: 'HMAC_SHA256', label: 'outage' });
      if (ok.status !== 201) await new Promise((res) => setTimeout(res, 50));
    }
    expect(ok!.status).toBe(201);
    const audits = await db.sql`select after from audit_log where action = 'key.create' and entity_id = ${ok!.body.key_id}`;
    expect(audits).toHaveLength(1);
    expect(JSON.stringify(audits[0])).not.toContain(ok!.body.secret);
    expect(uncaught).toEqual([]);
  });
});
