// The whole exchange as a user runs it: `npm start` (the compiled process) with the demo seed,
// an admin key from --bootstrap-admin, real WebSocket clients, a restart in the middle.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { adminHeaders, loginMessage, type ClientCredentials } from '../../gateway/auth.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startKwx, waitForStatus, type KwxProcess } from '../support/process.js';

type Msg = Record<string, unknown> & { type: string };

class Client {
  readonly inbox: Msg[] = [];
  private waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Msg;
      this.inbox.push(m);
      this.waiters = this.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
  }
  static async open(port: number): Promise<Client> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    return new Client(ws);
  }
  next(pred: (m: Msg) => boolean, timeoutMs = 10_000): Promise<Msg> {
    const seen = this.inbox.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out; inbox: ${JSON.stringify(this.inbox.slice(-5))}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }
  async request(msg: Record<string, unknown>): Promise<Msg> {
    this.ws.send(JSON.stringify(msg));
    return this.next((m) => m.req_id === msg.req_id && (m.type === 'ack' || m.type === 'reject' || m.type === 'logged_in' || m.type === 'balances' || m.type === 'order_state'));
  }
  close(): void {
    this.ws.close();
  }
}

function credentials(stdout: string): Map<string, ClientCredentials & { user_id: number }> {
  const creds = new Map<string, ClientCredentials & { user_id: number }>();
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as { demo_user?: string; role?: string; user_id: number; key_id: string; secret: string };
    creds.set(o.demo_user ?? 'admin', { key_id: o.key_id, algorithm: 'HMAC_SHA256', secret: o.secret, user_id: o.user_id });
  }
  return creds;
}

describe('the exchange end to end (npm start): trading, restart, meters', () => {
  let db: TestDatabase;
  let kwx: KwxProcess | undefined;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
  });
  afterAll(async () => {
    kwx?.child.kill('SIGKILL');
    await db.drop();
  });

  const env = (): Record<string, string> => ({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: db.url, LOG_LEVEL: 'info', KWX_ENGINE_WORKERS: '1' });

  it('a consumer buys a prosumer’s solar energy over WebSocket; both see the fill; the book survives a restart', async () => {
    kwx = startKwx(env(), ['--seed-demo', '--bootstrap-admin', 'admin@e2e.kwx']);
    const port = await kwx.port;
    expect(await waitForStatus(`http://127.0.0.1:${port}/health`, 200, 60_000)).toBe(200);
    const creds = credentials(kwx.stdout());
    expect([...creds.keys()].sort()).toEqual(['admin', 'consumer', 'operator', 'prosumer']);
    const [zone] = await db.sql<{ id: string }[]>`select id from grid_zones where code = 'DEMO-1'`;
    const zone_id = Number(zone.id);
    const [iv] = await db.sql<{ id: string }[]>`select id from delivery_intervals where zone_id = ${zone_id} and gate_opens_at <= now() order by starts_at desc limit 1`;
    const interval_id = Number(iv.id);

    // an ADMIN deposits 50.00 EUR for the consumer (signed admin HTTP)
    const body = JSON.stringify({ transfer_id: 'e2e-dep-1', user_id: creds.get('consumer')!.user_id, currency: 'EUR', amount: '50.00' });
    const dep = await fetch(`http://127.0.0.1:${port}/admin/deposits`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...adminHeaders(creds.get('admin')!, 'POST', '/admin/deposits', body) },
      body,
    });
    expect(dep.status).toBe(201);
    // a consumer may not deposit for itself
    const body2 = JSON.stringify({ transfer_id: 'e2e-dep-2', user_id: creds.get('consumer')!.user_id, currency: 'EUR', amount: '50.00' });
    const forbidden = await fetch(`http://127.0.0.1:${port}/admin/deposits`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...adminHeaders(creds.get('consumer')!, 'POST', '/admin/deposits', body2) },
      body: body2,
    });
    expect(forbidden.status).toBe(403);

    const seller = await Client.open(port);
    const buyer = await Client.open(port);
    expect((await seller.request({ ...loginMessage(creds.get('prosumer')!), req_id: 1 })).type).toBe('logged_in');
    expect((await buyer.request({ ...loginMessage(creds.get('consumer')!), req_id: 1 })).type).toBe('logged_in');

    const rest = await seller.request({ type: 'place', req_id: 's1', zone_id, interval_id, client_order_id: 'sun-1', side: 'SELL', order_type: 'LIMIT', source: 'SOLAR', price: '0.2000', qty: '2.000' });
    expect(rest).toMatchObject({ type: 'ack', status: 'ACTIVE', remaining_qty: '2.000' });
    const sellOrderId = rest.order_id as number;

    // the order survives a restart: SIGTERM, start again, the book is recovered from the journal
    seller.close();
    buyer.close();
    kwx.child.kill('SIGTERM');
    expect(await kwx.exited).toBe(0);
    kwx = startKwx(env());
    const port2 = await kwx.port;
    expect(await waitForStatus(`http://127.0.0.1:${port2}/health`, 200, 60_000)).toBe(200);

    const seller2 = await Client.open(port2);
    const buyer2 = await Client.open(port2);
    expect((await seller2.request({ ...loginMessage(creds.get('prosumer')!), req_id: 1 })).type).toBe('logged_in');
    expect((await buyer2.request({ ...loginMessage(creds.get('consumer')!), req_id: 1 })).type).toBe('logged_in');

    const take = await buyer2.request({ type: 'place', req_id: 'b1', zone_id, interval_id, client_order_id: 'home-1', side: 'BUY', order_type: 'IOC', source: 'SOLAR', price: '0.2500', qty: '1.500' });
    expect(take).toMatchObject({ type: 'ack', status: 'MATCHED', filled_qty: '1.500' });
    expect(take.fills).toEqual([expect.objectContaining({ price: '0.2000', qty: '1.500', source: 'SOLAR' })]);
    const makerFill = await seller2.next((m) => m.type === 'fill' && m.order_id === sellOrderId);
    expect(makerFill).toMatchObject({ side: 'SELL', price: '0.2000', qty: '1.500', liquidity: 'MAKER' });

    // the trade is in the read model once projected
    let trades: { qty_wh: string; price_ticks: string }[] = [];
    for (let i = 0; i < 50 && trades.length === 0; i++) {
      trades = await db.sql<{ qty_wh: string; price_ticks: string }[]>`select qty_wh::text, price_ticks::text from trades where sell_order_id = ${sellOrderId}`;
      if (trades.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(trades).toEqual([{ qty_wh: '1500', price_ticks: '2000' }]);

    // a trader cannot cancel another trader's order: same answer as an unknown one
    const foreign = await buyer2.request({ type: 'cancel', req_id: 'x1', order_id: sellOrderId });
    expect(foreign).toMatchObject({ type: 'reject', code: 'UNKNOWN_ORDER' });
    const own = await seller2.request({ type: 'cancel', req_id: 'c1', order_id: sellOrderId });
    expect(own).toMatchObject({ type: 'ack', status: 'CANCELLED' });

    // an operator registers a meter: its ingest token comes back once and writes only its own readings
    const signed = async (who: string, method: string, path: string, payload?: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
      const text = payload === undefined ? '' : JSON.stringify(payload);
      const res = await fetch(`http://127.0.0.1:${port2}${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...adminHeaders(creds.get(who)!, method, path, text) },
        ...(payload === undefined ? {} : { body: text }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const meter = await signed('operator', 'POST', '/admin/meters', { serial: 'E2E-METER-1', user_id: creds.get('prosumer')!.user_id, zone_id, max_power_w: 8000 });
    expect(meter.status).toBe(201);
    expect(meter.body.token).toMatch(/^kwx_m_\d+_/);
    expect(meter.body).not.toHaveProperty('token_hash');
    const audit = await db.sql<{ after: Record<string, unknown> }[]>`select after from audit_log where action = 'meter.register' order by id desc limit 1`;
    expect(JSON.stringify(audit[0].after)).not.toContain(String(meter.body.token));
    // the meter was installed yesterday (registration backdated in the database): today's readings are after it
    await db.sql`update smart_meters set registered_at = now() - interval '1 day' where serial = 'E2E-METER-1'`;
    const quarter = Math.floor(Date.now() / 900_000) * 900_000 - 900_000;
    const post = (token: string, readings: unknown[]) =>
      fetch(`http://127.0.0.1:${port2}/ingest/readings`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(readings) });
    const ok = await post(String(meter.body.token), [{ meter_serial: 'E2E-METER-1', interval_start: quarter, interval_minutes: 15, production_wh: 1200, consumption_wh: 100 }]);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ received: 1, accepted: 1, rejected: 0 });
    const otherMeter = await post(String(meter.body.token), [{ meter_serial: 'DEMO-METER-0002', interval_start: quarter, interval_minutes: 15, production_wh: 0, consumption_wh: 100 }]);
    expect(await otherMeter.json()).toMatchObject({ accepted: 0, rejected: 1, results: [expect.objectContaining({ code: 'FORBIDDEN_METER' })] });
    const [stored] = await db.sql<{ n: string }[]>`select count(*)::text as n from meter_readings r join smart_meters m on m.id = r.meter_id where m.serial = 'E2E-METER-1'`;
    expect(stored.n).toBe('1');
    // a trader may not register meters; a rotated token is issued once more
    expect((await signed('prosumer', 'POST', '/admin/meters', { serial: 'E2E-METER-2', user_id: creds.get('prosumer')!.user_id, zone_id, max_power_w: 8000 })).status).toBe(403);
    const rotated = await signed('operator', 'POST', `/admin/meters/${String(meter.body.id)}/token`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.token).toMatch(/^kwx_m_\d+_/);
    expect(rotated.body.token).not.toBe(meter.body.token);
    // the old token stops at once in this process (it was just accepted, so it was cached); the new one works
    const old = await post(String(meter.body.token), [{ meter_serial: 'E2E-METER-1', interval_start: quarter - 900_000, interval_minutes: 15, production_wh: 1000, consumption_wh: 100 }]);
    expect(old.status).toBe(401);
    const fresh = await post(String(rotated.body.token), [{ meter_serial: 'E2E-METER-1', interval_start: quarter - 900_000, interval_minutes: 15, production_wh: 1000, consumption_wh: 100 }]);
    expect(await fresh.json()).toMatchObject({ received: 1, accepted: 1, rejected: 0 });
    expect((await signed('operator', 'POST', '/admin/meters/999999/token')).status).toBe(404);

    // an operator opens a new zone while kwx runs: it trades at once (engine, ledger, interval calendar), no restart
    const created = await signed('operator', 'POST', '/admin/zones', {
      code: 'E2E-NEW', name: 'Opened while running', currency: 'EUR', tick_size: '0.0001', capacity_w: 200000,
      price_band_min_ticks: 0, price_band_max_ticks: 10000, max_order_wh: 1000000, gate_open_lead_minutes: 120,
    });
    expect(created.status).toBe(201);
    expect(created.body.engine).toEqual({ running: true });
    const newZone = Number(created.body.id);
    const [open] = await db.sql<{ id: string }[]>`select id from delivery_intervals where zone_id = ${newZone} and gate_opens_at <= now() and gate_closes_at > now() order by starts_at limit 1`;
    const newInterval = Number(open.id);
    const sellNew = await seller2.request({ type: 'place', req_id: 'n1', zone_id: newZone, interval_id: newInterval, client_order_id: 'new-1', side: 'SELL', order_type: 'LIMIT', source: 'SOLAR', price: '0.1500', qty: '1.000' });
    expect(sellNew).toMatchObject({ type: 'ack', status: 'ACTIVE' });
    const buyNew = await buyer2.request({ type: 'place', req_id: 'n2', zone_id: newZone, interval_id: newInterval, client_order_id: 'new-2', side: 'BUY', order_type: 'IOC', source: 'ANY', price: '0.1500', qty: '1.000' });
    expect(buyNew).toMatchObject({ type: 'ack', status: 'MATCHED', filled_qty: '1.000' });

    seller2.close();
    buyer2.close();
    kwx.child.kill('SIGTERM');
    expect(await kwx.exited).toBe(0);
    kwx = undefined;
  });
});
