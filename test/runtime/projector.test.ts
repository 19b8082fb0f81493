// The projector survives a connection the network cut silently (a query that never settles):
// the stuck batch times out, its connection is dropped, and the read models catch up by
// themselves once the database answers again; no restart needed.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startRuntime, type Runtime } from '../../engine/runtime/runtime.js';
import { startProjector, type Projector } from '../../engine/runtime/projections.js';
import { connectNoDelay } from '../../engine/runtime/pg.js';
import type { SubmitCommand } from '../../engine/runtime/types.js';
import { seedMarket, type Market } from './fixtures.js';
import { startBlackholeProxy, type BlackholeProxy } from './blackhole.js';

let db: TestDatabase;
let market: Market;
let proxy: BlackholeProxy;
let rt: Runtime | undefined;
let projector: Projector | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  market = await seedMarket(db.sql, { zones: 1, users: 2 });
  proxy = await startBlackholeProxy(db.url);
});
afterAll(async () => {
  proxy?.heal();
  await projector?.stop();
  await rt?.stop();
  await proxy?.close();
  await db?.drop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function place(i: number): SubmitCommand {
  return {
    type: 'PLACE',
    user_id: market.user_ids[i % 2],
    client_order_id: `p${i}`,
    zone_id: market.zone_ids[0],
    interval_id: market.interval_ids[0],
    side: i % 2 === 0 ? 'BUY' : 'SELL',
    source: i % 2 === 0 ? 'ANY' : 'SOLAR',
    order_type: 'LIMIT',
    price_ticks: i % 2 === 0 ? 100 : 200, // never cross: every order rests
    qty_wh: 1000,
  };
}

async function submitOrders(from: number, n: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = from; i < from + n; i++) {
    const r = await rt!.submit(market.zone_ids[0], place(i));
    if (!r.ok || r.order_id === undefined) throw new Error(`order ${i} not acknowledged: ${JSON.stringify(r)}`);
    ids.push(r.order_id);
  }
  return ids;
}

test('a projection pass stuck on a silently cut connection times out, drops it, and the read models catch up when the database answers', async () => {
  const zone = market.zone_ids[0];
  // The runtime writes the journal directly; only the projector goes through the proxy.
  rt = await startRuntime({ database_url: db.url, workers: 1, projections: false, clock_tick_ms: 50 });
  for (let i = 0; i < 100 && !(await rt.dump(zone)).state.intervals.length; i++) await sleep(50);
  const first = await submitOrders(0, 10);

  projector = startProjector(db.sql, {
    zones: [zone],
    poll_ms: 50,
    batch_timeout_ms: 500,
    connect: () => connectNoDelay(proxy.url, { max: 1, application: 'kwx-projector-test' }),
  });
  await projector.sync();
  const before = await db.sql<{ id: string }[]>`select id from orders where zone_id = ${zone} order by id`;
  expect(before.map((r) => Number(r.id))).toEqual(first);

  // The network goes silent: the projector's open connection and any new one hang.
  proxy.blackhole();
  const second = await submitOrders(10, 10);
  // Let a few polls start (and hang) on the dead connection.
  for (let i = 0; i < 20; i++) await sleep(50);
  proxy.heal();

  // Without the batch timeout this never resolves: the stuck pass holds every later one.
  await projector.sync();
  const after = await db.sql<{ id: string }[]>`select id from orders where zone_id = ${zone} order by id`;
  expect(after.map((r) => Number(r.id))).toEqual([...first, ...second]);
  // The projection offset reached the end of the journal.
  const [{ seq }] = await db.sql<{ seq: string }[]>`select seq from engine_projection_offsets where zone_id = ${zone}`;
  const [{ max }] = await db.sql<{ max: string }[]>`select max(seq) as max from engine_journal where zone_id = ${zone}`;
  expect(Number(seq)).toBe(Number(max));
});
