// Alert and roll-up writes when the connection to PostgreSQL drops mid-statement (through the
// cuttable proxy). postgres.js 3.4.9 crashes the whole process from a timer when sql.begin()
// sends its ROLLBACK on a connection that has just dropped (porsager/postgres#1208); ingest
// therefore writes alerts and roll-ups as single statements. These tests cut the connection while
// such a write waits on a lock: the process must survive, nothing may be half written or applied
// twice, and the next value must complete what failed. (The server may still commit a statement
// whose client went away — it notices only when it next reads — so either outcome is allowed, as
// long as it is all or nothing.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../../schema/db.js';
import { createLogger } from '../../schema/log.js';
import { createIngestService, type IngestService } from '../../ingest/index.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startProxy, type CuttableProxy } from '../support/proxy.js';
import { createDevice, createMeter, createUser, reading, slot } from './helpers.js';

let db: TestDatabase;
let proxy: CuttableProxy;
let sql: Sql;
let service: IngestService;
let zoneId: number;

beforeAll(async () => {
  db = await createTestDatabase({ max: 4 });
  proxy = await startProxy(db.url);
  sql = connect(proxy.url, { max: 6, application: 'kwx-outage-proxied' });
  const [zone] = await db.sql<{ id: string }[]>`
    insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh, timezone)
    values ('Z1', 'Zone one', 'EUR', 0.0001, 10000000, 1, 100000, 1000000, 'UTC') returning id`;
  zoneId = Number(zone.id);
  service = await createIngestService({ sql, log: createLogger('silent', 'ingest-outage-test'), worker_threads: 1, background: false, registry_ttl_ms: 0 });
});

afterAll(async () => {
  await service?.close();
  await sql?.end({ timeout: 1 });
  await proxy?.close();
  await db?.drop();
});

const body = (x: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(x));

/**
 * Runs `trigger` while `table` is locked (share mode: writes to it wait), waits until a statement of
 * the service waits on that lock, cuts the proxy (the service's connections drop mid-statement),
 * lets `settled` finish (it must reject or resolve, not hang), then unlocks, waits until the cut
 * connections' server processes have finished (committed or rolled back their statement) and
 * restores the proxy.
 */
async function cutWhileWaitingOn(table: string, trigger: () => Promise<unknown>, settled: () => Promise<unknown>): Promise<void> {
  const blocker = await db.sql.reserve();
  await blocker`begin`;
  await blocker.unsafe(`lock table ${table} in share mode`);
  try {
    await trigger();
    for (;;) {
      const [{ n }] = await blocker<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`;
      if (n > 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const cut = await blocker<{ pid: number }[]>`select pid from pg_stat_activity where application_name = 'kwx-outage-proxied'`;
    await proxy.cut();
    await settled();
    await blocker`rollback`;
    for (;;) {
      const [{ n }] = await blocker<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where pid = any(${cut.map((c) => c.pid)}::int[])`;
      if (n === 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    await blocker`rollback`.catch(() => {});
    blocker.release();
    await proxy.restore();
  }
}

describe('alert writes survive a dropped connection', () => {
  it('firing and resolving are atomic single statements: a cut mid-write leaves nothing half written, the process lives on, the next value completes it', async () => {
    const owner = await createUser(db, 'outage-owner');
    const d = await createDevice(db, { serial: 'INV-OUT', user_id: owner, kind: 'INVERTER' });
    const principal = { kind: 'device' as const, id: d.id };
    await service.alerts.createRule({ user_id: owner, name: 'Output low', subject_kind: 'DEVICE', metric: 'ac_power', operator: 'lt', threshold: 1, unit: 'kW', severity: 'WARNING' });
    const t0 = Date.now() - 30 * 60_000;
    const point = (minute: number, w: number) => [{ metric: 'ac_power', value: w, unit: 'W', time: new Date(t0 + minute * 60_000).toISOString() }];

    // the point is stored (telemetry is not locked), then firing waits on the alerts lock and its connection drops
    await cutWhileWaitingOn(
      'alerts',
      async () => expect((await service.submitTelemetry(principal, body(point(0, 100)), 'json')).accepted).toBe(1),
      () => service.alerts.idle(),
    );
    // all or nothing: an alert comes with its notification
    const [c] = await db.sql`select (select count(*)::int from alerts) as a, (select count(*)::int from notifications where user_id = ${owner}) as n`;
    expect([[0, 0], [1, 1]]).toContainEqual([c.a, c.n]);

    // the next low value fires it if it was not: one alert, one notification either way
    await service.submitTelemetry(principal, body(point(1, 200)), 'json');
    await service.settle();
    let alerts = await service.alerts.listAlerts(owner);
    expect(alerts.map((a) => a.status)).toEqual(['FIRING']);
    expect((await db.sql`select count(*)::int as n from notifications where user_id = ${owner}`)[0].n).toBe(1);

    // resolving: the update waits on the lock, the connection drops; resolved with its notification, or neither
    await cutWhileWaitingOn(
      'alerts',
      async () => expect((await service.submitTelemetry(principal, body(point(2, 5000)), 'json')).accepted).toBe(1),
      () => service.alerts.idle(),
    );
    alerts = await service.alerts.listAlerts(owner);
    const notified = (await db.sql`select count(*)::int as n from notifications where user_id = ${owner}`)[0].n;
    expect([['FIRING', 1], ['RESOLVED', 2]]).toContainEqual([alerts[0].status, notified]);

    // the next clear value resolves it if it was not, with its notification
    await service.submitTelemetry(principal, body(point(3, 6000)), 'json');
    await service.settle();
    alerts = await service.alerts.listAlerts(owner);
    expect(alerts.map((a) => a.status)).toEqual(['RESOLVED']);
    const notes = await db.sql`select title, data from notifications where user_id = ${owner} order by id`;
    expect(notes.map((n) => [n.title, n.data.status, n.data.alert_id])).toEqual([
      ['WARNING: Output low', 'FIRING', alerts[0].id],
      ['Resolved: Output low', 'RESOLVED', alerts[0].id],
    ]);
  });
});

describe('roll-up applier survives a dropped connection', () => {
  it('a cut while folding the outbox folds it all or not at all; the next run folds the rest, each reading counted once', async () => {
    const owner = await createUser(db, 'rollup-owner');
    const m = await createMeter(db, { serial: 'RU-OUT', user_id: owner, zone_id: zoneId });
    const principal = { kind: 'meter' as const, id: m.id };
    const r = await service.submitReadings(principal, body([reading('RU-OUT', slot(6), 10, 1), reading('RU-OUT', slot(5), 20, 2)]), 'json');
    expect(r.accepted).toBe(2);
    const [{ n: queued }] = await db.sql<{ n: number }[]>`select count(*)::int as n from reading_rollup_outbox`;
    expect(queued).toBeGreaterThan(0);
    // the applier's upsert waits on the roll-ups lock; its connection drops
    let failed: unknown = null;
    await cutWhileWaitingOn(
      'reading_rollups',
      async () => {
        void service.settle().catch((err: unknown) => (failed = err));
      },
      async () => {
        while (failed === null) await new Promise((r) => setTimeout(r, 5));
      },
    );
    expect(failed).not.toBeNull();
    const [c] = await db.sql`
      select (select count(*)::int from reading_rollup_outbox) as queued,
             (select coalesce(sum(reading_count), 0)::int from reading_rollups where scope = 'ZONE' and period = 'HOUR') as rolled`;
    expect([[queued, 0], [0, 2]]).toContainEqual([c.queued, c.rolled]);
    await service.settle();
    expect((await db.sql`select count(*)::int as n from reading_rollup_outbox`)[0].n).toBe(0);
    const zone = await db.sql`select sum(production_wh)::int as p, sum(reading_count)::int as n from reading_rollups where scope = 'ZONE' and period = 'HOUR' and scope_id = ${zoneId}`;
    expect(zone[0]).toEqual({ p: 30, n: 2 });
  });
});

describe('readings fast path survives a dropped connection', () => {
  it('a cut while the COPY transaction waits is answered 503 (not acknowledged), the process lives on, the resend is stored once, and later batches still go through', async () => {
    const owner = await createUser(db, 'copy-owner');
    const m = await createMeter(db, { serial: 'CP-OUT', user_id: owner, zone_id: zoneId });
    const principal = { kind: 'meter' as const, id: m.id };
    // a fresh body per submission: the service hands (transfers) the bytes to its decode thread
    const batch = () => body([reading('CP-OUT', slot(8), 5, 1), reading('CP-OUT', slot(7), 6, 1)]);
    let answer: unknown = null;
    await cutWhileWaitingOn(
      'meter_readings',
      async () => {
        service.submitReadings(principal, batch(), 'json').then(
          (r) => (answer = r),
          (err: unknown) => (answer = err),
        );
      },
      async () => {
        while (answer === null) await new Promise((r) => setTimeout(r, 5));
      },
    );
    expect(answer).toMatchObject({ code: 'STORAGE_UNAVAILABLE', http_status: 503 });
    // the resend: stored now, or found identical if the cut transaction committed after all
    const again = await service.submitReadings(principal, batch(), 'json');
    expect(again.accepted + again.duplicates).toBe(2);
    for (let k = 6; k >= 1; k--) expect((await service.submitReadings(principal, body([reading('CP-OUT', slot(k), 7, 1)]), 'json')).accepted).toBe(1);
    await service.settle();
    const [c] = await db.sql`
      select (select count(*)::int from meter_readings where meter_id = ${m.id}) as rows,
             (select sum(reading_count)::int from reading_rollups where scope = 'METER' and scope_id = ${m.id} and period = 'HOUR') as rolled`;
    expect(c).toEqual({ rows: 8, rolled: 8 });
  });
});

