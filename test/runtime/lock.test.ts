// One runtime per database writes the journal: the journal's session holds an advisory lock.
// After an outage ends that session, the runtime re-takes the lock by itself; if another runtime
// took it meanwhile, this one is fenced: it writes nothing more and refuses every command.
import { afterAll, beforeAll, expect, test } from 'vitest';
import postgres from 'postgres';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { RUNTIME_LOCK_KEY, startRuntime, type Runtime } from '../../engine/runtime/runtime.js';
import type { SubmitCommand, SubmitResult } from '../../engine/runtime/types.js';
import { seedMarket, type Market } from './fixtures.js';
import { startProxy, type CuttableProxy } from '../support/proxy.js';

let db: TestDatabase;
let market: Market;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  market = await seedMarket(db.sql, { zones: 1, users: 2 });
});
afterAll(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
  await db?.drop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let coid = 0;

function place(): SubmitCommand {
  const i = coid++;
  return {
    type: 'PLACE',
    user_id: market.user_ids[i % 2],
    client_order_id: `l${i}`,
    zone_id: market.zone_ids[0],
    interval_id: market.interval_ids[0],
    side: i % 2 === 0 ? 'BUY' : 'SELL',
    source: i % 2 === 0 ? 'ANY' : 'SOLAR',
    order_type: 'LIMIT',
    price_ticks: i % 2 === 0 ? 100 : 200,
    qty_wh: 1000,
  };
}

/** Application names of the sessions holding the runtime lock in this database. */
async function lockHolders(): Promise<string[]> {
  const rows = await db.sql<{ app: string }[]>`
    select a.application_name as app from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
      and ((l.classid::bigint << 32) | l.objid::bigint) = ${RUNTIME_LOCK_KEY.toString()}::bigint and l.objsubid = 1`;
  return rows.map((r) => r.app);
}

async function until(what: string, f: () => Promise<boolean> | boolean, polls = 400): Promise<void> {
  for (let i = 0; i < polls; i++) {
    if (await f()) return;
    await sleep(25);
  }
  throw new Error(`never happened: ${what}`);
}

async function started(proxy: CuttableProxy): Promise<Runtime> {
  const rt = await startRuntime({ database_url: proxy.url, workers: 1, projections: false, clock_tick_ms: 50, slow_commit_ms: 200, commit_timeout_ms: 800 });
  cleanup.push(() => rt.stop());
  const zone = market.zone_ids[0];
  await until('interval open', async () => (await rt.dump(zone)).state.intervals.length > 0);
  return rt;
}

test('after an outage ends its session, the runtime re-takes the journal lock by itself and goes on', async () => {
  const proxy = await startProxy(db.url);
  cleanup.push(() => proxy.close());
  const rt = await started(proxy);
  const zone = market.zone_ids[0];
  expect((await rt.submit(zone, place())).ok).toBe(true);
  expect(await lockHolders()).toEqual(['kwx-journal']);
  expect(rt.status().journal_locked).toBe(true);

  await proxy.cut();
  // The server ends the session, and the lock with it.
  await until('lock released on the server', async () => (await lockHolders()).length === 0);
  await proxy.restore();
  // Re-taken without any command arriving.
  await until('lock re-taken', async () => (await lockHolders()).length === 1 && rt.status().journal_locked);
  expect(await lockHolders()).toEqual(['kwx-journal']);
  const r = await rt.submit(zone, place());
  expect(r.ok).toBe(true);
  await rt.stop();
});

test('if another runtime took the lock during the outage, this one is fenced: held commands are refused, nothing more is written', async () => {
  const proxy = await startProxy(db.url);
  cleanup.push(() => proxy.close());
  const rt = await started(proxy);
  const zone = market.zone_ids[0];
  expect((await rt.submit(zone, place())).ok).toBe(true);

  await proxy.cut();
  await until('lock released on the server', async () => (await lockHolders()).length === 0);
  // Another writer takes the lock while this runtime cannot reach the database.
  const other = postgres(db.url, { max: 1, onnotice: () => {}, connection: { application_name: 'other-runtime' } });
  cleanup.push(() => other.end({ timeout: 1 }));
  await other`select pg_advisory_lock(${RUNTIME_LOCK_KEY.toString()}::bigint)`;
  const [{ n: rowsBefore }] = await db.sql<{ n: string }[]>`select count(*) as n from engine_journal where zone_id = ${zone}`;

  // Sequenced during the outage: held, not answered, until the journal knows its fate.
  const held: Promise<SubmitResult>[] = [];
  for (let i = 0; i < 5; i++) held.push(rt.submit(zone, place()));
  await proxy.restore();

  const answers = await Promise.all(held);
  for (const a of answers) expect(a.ok ? 'ok' : a.code).toBe('EXCHANGE_UNAVAILABLE');
  await until('fenced', () => rt.status().journal === 'FENCED');
  expect(rt.status().available).toBe(false);
  const later = await rt.submit(zone, place());
  expect(later.ok ? 'ok' : later.code).toBe('EXCHANGE_UNAVAILABLE');
  expect(await lockHolders()).toEqual(['other-runtime']);
  const [{ n: rowsAfter }] = await db.sql<{ n: string }[]>`select count(*) as n from engine_journal where zone_id = ${zone}`;
  expect(Number(rowsAfter)).toBe(Number(rowsBefore));
  await rt.stop();
});
