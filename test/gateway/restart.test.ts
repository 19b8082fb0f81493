// The money path across a restart, with the REAL runtime (journal, workers: `npm run build` first),
// the real ledger persisted by a LedgerStore, and real `ws` clients:
// deposit → resting BUY (hold, durable before the ack) → a gateway hold that never reached the book
// → an operator cancel while no gateway runs → stop everything → restart (runtime from the journal,
// ledger from PostgreSQL) → the lost hold and the cancelled order's hold are released → a SELL fills
// the resting BUY → the hold turns into escrow with the right amounts (durable before the fill is
// reported), balances on the private stream match the ledger, and the sum of balances is unchanged.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Registry } from 'prom-client';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { seedMarket, type Market } from '../runtime/fixtures.js';
import { startRuntime, type Runtime } from '../../engine/runtime/runtime.js';
import { Ledger, LedgerStore, loadLedger } from '../../ledger/index.js';
import { buyerMaxMinor, pricingFactors } from '../../ledger/money.js';
import { startHttpServer, type HttpServer } from '../../gateway/server.js';
import { attachGateway, createApiKey, loginMessage, adminHeaders, type Gateway } from '../../gateway/index.js';
import { isGatewayHoldId, type LedgerFunds } from '../../gateway/backend.js';
import type { ClientCredentials } from '../../gateway/auth.js';
import { Client, type Json } from './client.js';

let db: TestDatabase;
let market: Market;
let zone_id: number;
let interval_id: number;
const users: Record<'alice' | 'bob' | 'admin', { user_id: number; creds: ClientCredentials }> = {} as never;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Node {
  rt: Runtime;
  ledger: Ledger;
  store: LedgerStore;
  server: HttpServer;
  gw: Gateway;
  url: string;
  http: string;
}
let node: Node | null = null;

async function startRuntimeOnly(): Promise<Runtime> {
  const rt = await startRuntime({ database_url: db.url, workers: 1, clock_tick_ms: 50, intervals_refresh_ms: 100, projections: false });
  for (let i = 0; i < 200 && !(await rt.dump(zone_id)).state.intervals.some((iv) => iv.interval_id === interval_id); i++) await sleep(25);
  return rt;
}

async function startNode(rt?: Runtime): Promise<Node> {
  const ledger = await loadLedger(db.sql);
  const store = new LedgerStore(db.sql, ledger);
  store.start(5);
  const runtime = rt ?? (await startRuntimeOnly());
  const registry = new Registry();
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, metrics: registry, version: 'test' });
  const gw = await attachGateway({ app: server.app, sql: db.sql, metrics: registry, runtime, ledger, ledgerStore: store });
  return { rt: runtime, ledger, store, server, gw, url: `ws://127.0.0.1:${server.port}/ws`, http: `http://127.0.0.1:${server.port}` };
}

async function stopNode(n: Node): Promise<void> {
  await n.gw.close();
  n.server.close();
  await n.rt.stop();
  n.store.stop();
  await n.store.flush();
}

async function login(n: Node, who: 'alice' | 'bob'): Promise<Client> {
  const c = await Client.connect(n.url);
  const r = await c.request(loginMessage(users[who].creds));
  if (r.type !== 'logged_in') throw new Error(`login failed: ${JSON.stringify(r)}`);
  return c;
}

const place = (o: Record<string, unknown>) => ({ type: 'place', zone_id, interval_id, order_type: 'LIMIT', ...o });

/** Σ available + held + escrow of the given users (minor units). */
function userTotal(ledger: Ledger, ids: number[]): bigint {
  let t = 0n;
  for (const u of ids) {
    const b = ledger.balances(u, 'EUR');
    t += b.available_minor + b.held_minor + b.escrow_minor + b.pending_withdrawal_minor;
  }
  return t;
}

const cents = (v: bigint): string => `${v / 100n}.${(v % 100n).toString().padStart(2, '0')}`;

beforeAll(async () => {
  db = await createTestDatabase();
  market = await seedMarket(db.sql, { zones: 1, users: 0 });
  zone_id = market.zone_ids[0];
  interval_id = market.interval_ids[0];
  for (const [name, role] of [['alice', 'PROSUMER'], ['bob', 'PROSUMER'], ['admin', 'ADMIN']] as const) {
    const [u] = await db.sql`insert into users (email, name, role) values (${`${name}.${zone_id}@kwx.test`}, ${name}, ${role}) returning id`;
    const k = await createApiKey(db.sql, { user_id: Number(u.id), algorithm: 'HMAC_SHA256' });
    users[name] = { user_id: Number(u.id), creds: { key_id: k.key_id, algorithm: 'HMAC_SHA256', secret: k.secret! } };
  }
}, 60_000);

afterAll(async () => {
  if (node !== null) await stopNode(node);
  await db?.drop();
});

test('a resting BUY keeps its hold across a restart and fills into escrow; lost and cancelled holds are released', async () => {
  // ---- first life ----
  node = await startNode();
  const dep = JSON.stringify({ transfer_id: 'dep-alice-1', user_id: users.alice.user_id, currency: 'EUR', amount: '1000.00' });
  const res = await fetch(`${node.http}/admin/deposits`, {
    method: 'POST', body: dep, headers: { 'content-type': 'application/json', ...adminHeaders(users.admin.creds, 'POST', '/admin/deposits', dep, Date.now()) },
  });
  expect(res.status).toBe(201);
  // the deposit was durable when it was reported
  const [depRow] = await db.sql`select count(*)::int as n from ledger_transfers where id = 'dep-alice-1'`;
  expect(depRow.n).toBe(1);
  const total = userTotal(node.ledger, [users.alice.user_id]);
  expect(total).toBe(100_000n);

  const alice = await login(node, 'alice');
  const buy = await alice.request(place({ client_order_id: 'rest-1', side: 'BUY', price: '0.2500', qty: '10.000' }));
  expect(buy).toMatchObject({ type: 'ack', op: 'place', status: 'ACTIVE', remaining_qty: '10.000' });
  const order_id = buy.order_id as number;
  // the hold lives under the engine's order id, and was durable before the ack
  const hold = node.ledger.holds.get(order_id)!;
  expect(hold).toMatchObject({ user_id: users.alice.user_id, status: 'OPEN', qty_wh: 10_000, limit_price_ticks: 2500 });
  const [holdRow] = await db.sql`select status from ledger_order_holds where order_id = ${order_id}`;
  expect(holdRow?.status).toBe('OPEN');
  const held1 = hold.held_minor;

  // a second resting BUY that an operator cancels while no gateway runs (below)
  const buy2 = await alice.request(place({ client_order_id: 'rest-2', side: 'BUY', price: '0.1000', qty: '5.000' }));
  expect(buy2).toMatchObject({ type: 'ack', status: 'ACTIVE' });
  const held2 = node.ledger.holds.get(buy2.order_id)!.held_minor;

  // a crash between the hold and the commit: a durable gateway hold whose order never reached the book
  const funds = node.gw.funds as LedgerFunds;
  expect(funds.reserve({ user_id: users.alice.user_id, client_order_id: 'lost', zone_id, price_ticks: 2000, qty_wh: 1000 })).toBeNull();
  await funds.durable();
  const lost = [...node.ledger.holds.values()].find((h) => isGatewayHoldId(h.order_id) && h.status === 'OPEN')!;
  expect(lost).toBeDefined();
  const heldLost = lost.held_minor;
  expect(node.ledger.balances(users.alice.user_id, 'EUR').held_minor).toBe(held1 + held2 + heldLost);
  alice.close();

  // ---- stop everything; the runtime comes back alone and an operator cancels order 2 ----
  await stopNode(node);
  node = null;
  const rt = await startRuntimeOnly();
  const cancel = await rt.submit(zone_id, { type: 'CANCEL', order_id: buy2.order_id, user_id: users.alice.user_id });
  expect(cancel.ok && cancel.events.some((e) => e.type === 'CANCELLED')).toBe(true);

  // ---- second life: ledger from PostgreSQL, gateway replays the journal and reconciles ----
  node = await startNode(rt);
  // the cancel was applied from the journal (replay), not found missing by the book check
  expect(node.gw.ledgerSync!.startup).toMatchObject({ orphans_released: 1, stale_released: 0, unfunded: [] });
  expect(node.ledger.holds.get(lost.order_id)!.status).toBe('CANCELLED');
  expect(node.ledger.holds.get(buy2.order_id)!.status).toBe('CANCELLED');
  expect(node.ledger.holds.get(order_id)).toMatchObject({ status: 'OPEN', remaining_minor: held1 });
  expect(node.ledger.balances(users.alice.user_id, 'EUR')).toMatchObject({ held_minor: held1, available_minor: 100_000n - held1, escrow_minor: 0n });
  expect(userTotal(node.ledger, [users.alice.user_id])).toBe(total);

  // ---- a SELL fills the resting BUY (the maker: the trade is at its price) ----
  const alice2 = await login(node, 'alice');
  const bob = await login(node, 'bob');
  const sell = await bob.request(place({ client_order_id: 'sell-1', side: 'SELL', source: 'SOLAR', price: '0.2000', qty: '4.000' }));
  expect(sell).toMatchObject({ type: 'ack', status: 'MATCHED', filled_qty: '4.000' });
  const trade_id = sell.fills[0].trade_id as number;
  const fill = await alice2.next((m: Json) => m.type === 'fill' && m.trade_id === trade_id);
  expect(fill).toMatchObject({ order_id, side: 'BUY', price: '0.2500', qty: '4.000', liquidity: 'MAKER' });
  // the escrow was durable before the fill was reported
  const [escRow] = await db.sql`select escrow_minor::text as e, order_id from ledger_escrows where order_id = ${order_id}`;
  expect(escRow).toBeDefined();

  const f = pricingFactors(node.ledger.zone(zone_id));
  const escrow = buyerMaxMinor(f, 2500, 4000);
  const rest = buyerMaxMinor(f, 2500, 6000);
  expect(BigInt(escRow.e)).toBe(escrow);
  expect(node.ledger.holds.get(order_id)).toMatchObject({ status: 'OPEN', remaining_wh: 6000, remaining_minor: rest });
  const b = node.ledger.balances(users.alice.user_id, 'EUR');
  expect(b).toMatchObject({ escrow_minor: escrow, held_minor: rest, available_minor: 100_000n - held1 + (held1 - escrow - rest) });

  // the private stream's balance equals the ledger's
  const bal = await alice2.next((m: Json) => m.type === 'balance' && m.escrow !== '0.00');
  expect(bal).toMatchObject({ currency: 'EUR', available: cents(b.available_minor), held: cents(b.held_minor), escrow: cents(b.escrow_minor) });
  expect(await alice2.request({ type: 'balances' })).toMatchObject({
    balances: [{ currency: 'EUR', available: cents(b.available_minor), held: cents(b.held_minor), escrow: cents(b.escrow_minor) }],
  });
  // nothing created or lost: the users' money is what was deposited (the seller is paid at settlement)
  expect(userTotal(node.ledger, [users.alice.user_id, users.bob.user_id])).toBe(total);
  node.ledger.checkInvariants();
  alice2.close();
  bob.close();

  // ---- and once more: a restart replays nothing twice ----
  await stopNode(node);
  node = await startNode();
  expect(node.gw.ledgerSync!.startup).toMatchObject({ orphans_released: 0, stale_released: 0, unfunded: [] });
  expect(node.ledger.holds.get(order_id)).toMatchObject({ status: 'OPEN', remaining_minor: rest });
  expect(node.ledger.balances(users.alice.user_id, 'EUR')).toEqual(b);
  expect(userTotal(node.ledger, [users.alice.user_id, users.bob.user_id])).toBe(total);
}, 120_000);
