// Starts a gateway for tests: a fresh migrated database with one zone, two intervals, traders,
// operators and their keys; the real engine core in-process (createCoreBackend) and the real
// ledger; the lead's startHttpServer on port 0 with attachGateway on it.
import { Registry } from 'prom-client';
import { Ledger } from '../../ledger/ledger.js';
import { startHttpServer, type HttpServer } from '../../gateway/server.js';
import { attachGateway, createCoreBackend, createApiKey, loginMessage, adminHeaders, type CoreBackend, type Bus } from '../../gateway/index.js';
import type { Gateway, GatewayOptions } from '../../gateway/index.js';
import type { ClientCredentials } from '../../gateway/auth.js';
import type { GatewayLimits } from '../../gateway/limits.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { Client } from './client.js';

export const TICK = '0.0001';
export const BAND_MAX_TICKS = 100_000;

export interface Actor {
  user_id: number;
  role: string;
  creds: ClientCredentials;
}

export interface Exchange {
  db: TestDatabase;
  server: HttpServer;
  gw: Gateway;
  core: CoreBackend;
  ledger: Ledger;
  registry: Registry;
  zone_id: number;
  interval_id: number;
  interval2_id: number;
  url: string;
  http: string;
  actors: Record<'alice' | 'bob' | 'carol' | 'consumer' | 'operator' | 'admin', Actor>;
  login(who: Actor, extra?: Record<string, unknown>, opts?: { msgpack?: boolean }): Promise<Client>;
  anon(opts?: { msgpack?: boolean }): Promise<Client>;
  admin(who: Actor, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  deposit(who: Actor, amount: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startExchange(opts: { limits?: Partial<GatewayLimits>; now?: () => number; bus?: Bus; db?: TestDatabase; extra?: Partial<GatewayOptions> } = {}): Promise<Exchange> {
  const db = opts.db ?? (await createTestDatabase());
  const sql = db.sql;
  const [zone] = await sql`insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh)
    values (${'Z' + Math.random().toString(36).slice(2, 8).toUpperCase()}, 'Test zone', 'EUR', ${TICK}, 10000000, 0, ${BAND_MAX_TICKS}, 1000000000) returning id`;
  const zone_id = Number(zone.id);
  const intervals: number[] = [];
  for (const h of [2, 3]) {
    const [iv] = await sql`insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
      values (${zone_id}, now() + ${h + ' hours'}::interval, now() + ${h + ' hours 15 minutes'}::interval, now() - interval '1 hour', now() + ${h - 1 + ' hours'}::interval, 1000000000000) returning id`;
    intervals.push(Number(iv.id));
  }
  const mk = async (name: string, role: string, algorithm: 'HMAC_SHA256' | 'ED25519'): Promise<Actor> => {
    const [u] = await sql`insert into users (email, name, role) values (${`${name}.${zone_id}@kwx.test`}, ${name}, ${role}) returning id`;
    const k = await createApiKey(sql, { user_id: Number(u.id), algorithm });
    return { user_id: Number(u.id), role, creds: { key_id: k.key_id, algorithm, secret: (k.secret ?? k.private_key)! } };
  };
  const actors = {
    alice: await mk('alice', 'PROSUMER', 'HMAC_SHA256'),
    bob: await mk('bob', 'PROSUMER', 'ED25519'),
    carol: await mk('carol', 'PROSUMER', 'HMAC_SHA256'),
    consumer: await mk('consumer', 'CONSUMER', 'HMAC_SHA256'),
    operator: await mk('operator', 'GRID_OPERATOR', 'ED25519'),
    admin: await mk('admin', 'ADMIN', 'HMAC_SHA256'),
  };
  const core = createCoreBackend({ now: opts.now });
  core.addZone({ zone_id, price_step_ticks: 1, lot_wh: 1, band_min_ticks: 0, band_max_ticks: BAND_MAX_TICKS, min_qty_wh: 1, max_qty_wh: 1_000_000_000, max_open_orders_per_user: 100_000 });
  for (const iv of intervals) core.openInterval(zone_id, iv, 1_000_000_000_000);
  const registry = new Registry();
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, metrics: registry, version: 'test' });
  const ledger = new Ledger();
  const gw = await attachGateway({ app: server.app, sql, metrics: registry, backend: core, ledger, limits: opts.limits, now: opts.now, bus: opts.bus, ...opts.extra });
  const url = `ws://127.0.0.1:${server.port}/ws`;
  const http = `http://127.0.0.1:${server.port}`;
  const nowMs = opts.now ?? Date.now;
  const ex: Exchange = {
    db, server, gw, core, ledger, registry, zone_id, interval_id: intervals[0], interval2_id: intervals[1], url, http, actors,
    async anon(o = {}) {
      return Client.connect(o.msgpack ? `${url}?encoding=msgpack` : url, { msgpack: o.msgpack });
    },
    async login(who, extra = {}, o = {}) {
      const c = await ex.anon(o);
      const r = await c.request(loginMessage(who.creds, nowMs(), extra));
      if (r.type !== 'logged_in') throw new Error(`login failed: ${JSON.stringify(r)}`);
      return c;
    },
    async admin(who, method, path, body) {
      const raw = body === undefined ? '' : JSON.stringify(body);
      const res = await fetch(http + path, { method, body: raw === '' ? undefined : raw, headers: { 'content-type': 'application/json', ...adminHeaders(who.creds, method, path, raw, nowMs()) } });
      return { status: res.status, body: await res.json() };
    },
    async deposit(who, amount) {
      const r = await ex.admin(actors.admin, 'POST', '/admin/deposits', { transfer_id: `dep-${who.user_id}-${Math.random().toString(36).slice(2)}`, user_id: who.user_id, currency: 'EUR', amount });
      if (r.status !== 201) throw new Error(`deposit failed: ${JSON.stringify(r.body)}`);
    },
    async stop() {
      await gw.close();
      server.close();
      if (opts.db === undefined) await db.drop();
    },
  };
  return ex;
}
