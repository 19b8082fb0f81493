// Shared set-up for the ingest tests: a fresh database, an ingest service, a uWS app on a free
// loopback port, and helpers to register meters/devices with tokens and to call the endpoints.
import uWS from 'uWebSockets.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { createLogger } from '../../schema/log.js';
import { createIngestService, issueDeviceToken, issueMeterToken, registerIngestRoutes, type IngestLimits, type IngestService } from '../../ingest/index.js';

export interface Harness {
  db: TestDatabase;
  service: IngestService;
  base: string;
  ws_base: string;
  zone_id: number;
  user_id: number;
  close(): Promise<void>;
}

export interface HarnessOptions {
  limits?: Partial<IngestLimits>;
  now?: () => number;
  background?: boolean;
  zone_timezone?: string;
}

let seq = 0;

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const db = await createTestDatabase({ max: 8 });
  const [zone] = await db.sql<{ id: string }[]>`
    insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh, timezone)
    values ('Z1', 'Zone one', 'EUR', 0.0001, 10000000, 1, 100000, 1000000, ${opts.zone_timezone ?? 'UTC'}) returning id`;
  const userId = await createUser(db, 'owner');
  const service = await createIngestService({
    sql: db.sql,
    log: createLogger('silent', 'ingest-test'),
    limits: opts.limits,
    now: opts.now,
    worker_threads: 1,
    background: opts.background ?? false,
    registry_ttl_ms: 0,
  });
  const app = uWS.App();
  registerIngestRoutes(app, { service, log: createLogger('silent', 'ingest-test') });
  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s === false ? reject(new Error('listen failed')) : resolve(s))),
  );
  const port = uWS.us_socket_local_port(listen as unknown as uWS.us_socket);
  return {
    db,
    service,
    base: `http://127.0.0.1:${port}/ingest`,
    ws_base: `ws://127.0.0.1:${port}/ingest`,
    zone_id: Number(zone.id),
    user_id: userId,
    async close() {
      uWS.us_listen_socket_close(listen);
      await service.close();
      await db.drop();
    },
  };
}

export async function createUser(db: TestDatabase, name: string): Promise<number> {
  const [u] = await db.sql<{ id: string }[]>`
    insert into users (email, name, role) values (${`${name}-${++seq}-${Date.now()}@example.com`}, ${name}, 'PROSUMER') returning id`;
  return Number(u.id);
}

export interface MeterSpec {
  serial: string;
  user_id: number;
  zone_id: number;
  max_power_w?: number;
  interval_minutes?: number;
  registered_at?: Date;
  status?: 'ACTIVE' | 'INACTIVE' | 'MAINTENANCE';
}

export async function createMeter(db: TestDatabase, m: MeterSpec): Promise<{ id: number; token: string }> {
  const [row] = await db.sql<{ id: string }[]>`
    insert into smart_meters (serial, user_id, zone_id, status, max_power_w, interval_minutes, registered_at)
    values (${m.serial}, ${m.user_id}, ${m.zone_id}, ${m.status ?? 'ACTIVE'}, ${m.max_power_w ?? 12000}, ${m.interval_minutes ?? 15},
            ${m.registered_at ?? new Date(Date.now() - 90 * 86_400_000)}) returning id`;
  const id = Number(row.id);
  return { id, token: await issueMeterToken(db.sql, id) };
}

export async function createDevice(
  db: TestDatabase,
  d: { serial: string; user_id: number; kind?: string; status?: string; registered_at?: Date },
): Promise<{ id: number; token: string }> {
  const [row] = await db.sql<{ id: string }[]>`
    insert into devices (serial, user_id, kind, status, registered_at)
    values (${d.serial}, ${d.user_id}, ${d.kind ?? 'INVERTER'}, ${d.status ?? 'ACTIVE'}, ${d.registered_at ?? new Date(Date.now() - 90 * 86_400_000)}) returning id`;
  const id = Number(row.id);
  return { id, token: await issueDeviceToken(db.sql, id) };
}

export interface Reply {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function post(url: string, token: string | null, body: string | Uint8Array, contentType = 'application/json'): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': contentType };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === '' ? null : JSON.parse(text) };
}

/** An interval start `k` intervals before the current one (aligned), as ISO. */
export function slot(k: number, minutes = 15, nowMs = Date.now()): string {
  const step = minutes * 60_000;
  return new Date(Math.floor(nowMs / step) * step - k * step).toISOString();
}

export function reading(serial: string, start: string, production_wh: number, consumption_wh: number, extra: Record<string, unknown> = {}) {
  return { meter_serial: serial, interval_start: start, interval_minutes: 15, production_wh, consumption_wh, quality: 0, ...extra };
}

/** Codes of the report's results by item index. */
export function codes(body: { results: { index: number; status: string; code?: string }[] }): Record<number, string> {
  const out: Record<number, string> = {};
  for (const r of body.results) out[r.index] = r.code ?? r.status;
  return out;
}
