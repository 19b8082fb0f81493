// Admin HTTP: only operators, signed requests, every action in the audit log (who, what,
// before/after, when, from where).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, loginMessage } from '../../gateway/auth.js';
import { startExchange, type Exchange } from './harness.js';

let ex: Exchange;
beforeAll(async () => {
  ex = await startExchange();
});
afterAll(async () => ex?.stop());

async function lastAudit(action: string) {
  const [row] = await ex.db.sql`select * from audit_log where action = ${action} order by id desc limit 1`;
  return row;
}

describe('who may use the admin API', () => {
  it('a trader gets 403 FORBIDDEN, an unsigned or badly signed request 401 UNAUTHORIZED', async () => {
    const r = await ex.admin(ex.actors.alice, 'POST', `/admin/zones/${ex.zone_id}/halt`, { policy: 'KEEP_RESTING' });
    expect(r).toEqual({ status: 403, body: { code: 'FORBIDDEN', message: 'role PROSUMER may not use the admin API' } });
    expect((await ex.admin(ex.actors.consumer, 'GET', '/admin/audit')).status).toBe(403);
    const unsigned = await fetch(`${ex.http}/admin/audit`);
    expect(unsigned.status).toBe(401);
    expect(await unsigned.json()).toMatchObject({ code: 'UNAUTHORIZED' });
    const h = adminHeaders(ex.actors.operator.creds, 'GET', '/admin/audit');
    const tampered = await fetch(`${ex.http}/admin/audit?limit=1`, { headers: h });
    expect(tampered.status).toBe(401);
    const replay = await fetch(`${ex.http}/admin/audit`, { headers: h });
    expect(replay.status).toBe(200);
    expect((await fetch(`${ex.http}/admin/audit`, { headers: h })).status).toBe(401);
    expect(ex.core.engine(ex.zone_id).config()!.status).toBe('ACTIVE');
  });

  it('a GRID_OPERATOR may not do ADMIN-only actions (users, platform config, deposits)', async () => {
    const r = await ex.admin(ex.actors.operator, 'POST', '/admin/users', { email: 'x@y.z', name: 'x', role: 'ADMIN' });
    expect(r).toEqual({ status: 403, body: { code: 'FORBIDDEN', message: 'this action needs the ADMIN role' } });
    expect((await ex.admin(ex.actors.operator, 'PUT', '/admin/config/fees.default', { value: 1 })).status).toBe(403);
  });
});

describe('admin actions are audited', () => {
  it('halt with CANCEL_RESTING cancels resting orders in the engine, records before/after, actor, key and IP', async () => {
    const a = await ex.login(ex.actors.alice);
    const o = await a.request({ type: 'place', zone_id: ex.zone_id, interval_id: ex.interval_id, client_order_id: 'rest', side: 'SELL', source: 'SOLAR', order_type: 'LIMIT', price: '0.3000', qty: '1.000' });
    const r = await ex.admin(ex.actors.operator, 'POST', `/admin/zones/${ex.zone_id}/halt`, { policy: 'CANCEL_RESTING', reason: 'grid fault' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'HALTED', policy: 'CANCEL_RESTING', engine: { applied: true, cancelled: 1 } });
    expect(await a.next((m) => m.type === 'order' && m.order_id === o.order_id && m.status === 'CANCELLED')).toMatchObject({ reason: 'HALT' });
    expect(await a.request({ type: 'place', zone_id: ex.zone_id, interval_id: ex.interval_id, client_order_id: 'h2', side: 'SELL', source: 'SOLAR', order_type: 'LIMIT', price: '0.3000', qty: '1.000' })).toMatchObject({ code: 'ZONE_HALTED' });
    const row = await lastAudit('zone.halt');
    expect(row).toMatchObject({ actor_user_id: String(ex.actors.operator.user_id), actor_key_id: ex.actors.operator.creds.key_id, entity_type: 'grid_zone', entity_id: String(ex.zone_id), ip: '127.0.0.1' });
    expect(row.before).toMatchObject({ status: 'ACTIVE' });
    expect(row.after).toMatchObject({ status: 'HALTED', policy: 'CANCEL_RESTING', reason: 'grid fault' });
    expect(row.created_at).toBeInstanceOf(Date);
    expect((await ex.admin(ex.actors.operator, 'POST', `/admin/zones/${ex.zone_id}/resume`, {})).body).toMatchObject({ status: 'ACTIVE' });
    a.close();
  });

  it('zone settings, compliance rules, energy sources and meters: changes answer before/after and are audited', async () => {
    const z = await ex.admin(ex.actors.operator, 'PATCH', `/admin/zones/${ex.zone_id}`, { max_open_orders_per_user: 50, capacity_w: 20000000 });
    expect(z.status).toBe(200);
    expect(z.body.before.max_open_orders_per_user).toBe(200);
    expect(z.body.after.max_open_orders_per_user).toBe(50);
    expect(ex.core.engine(ex.zone_id).config()!.max_open_orders_per_user).toBe(50);
    expect((await lastAudit('zone.update')).after).toMatchObject({ max_open_orders_per_user: 50 });
    const rule = await ex.admin(ex.actors.operator, 'PUT', `/admin/zones/${ex.zone_id}/compliance/PRICE_BAND`, { parameters: { min: '0', max: '5' } });
    expect(rule.status).toBe(200);
    const src = await ex.admin(ex.actors.operator, 'POST', '/admin/energy-sources', { user_id: ex.actors.alice.user_id, zone_id: ex.zone_id, kind: 'SOLAR', capacity_w: 5000 });
    expect(src.status).toBe(201);
    const meter = await ex.admin(ex.actors.operator, 'POST', '/admin/meters', { serial: 'MTR-0001', user_id: ex.actors.alice.user_id, zone_id: ex.zone_id, max_power_w: 10000 });
    expect(meter.status).toBe(201);
    expect((await ex.admin(ex.actors.operator, 'POST', '/admin/meters', { serial: 'MTR-0001', user_id: ex.actors.alice.user_id, zone_id: ex.zone_id, max_power_w: 10000 })).status).toBe(409);
    expect((await ex.admin(ex.actors.operator, 'POST', '/admin/meters', { serial: 'MTR-0002', user_id: ex.actors.alice.user_id, zone_id: ex.zone_id, max_power_w: '10' })).body).toMatchObject({ code: 'INVALID_FIELD' });
    for (const action of ['compliance.set', 'energy_source.register', 'meter.register']) expect(await lastAudit(action)).toBeDefined();
  });

  it('an ADMIN creates a user and a key whose secret is shown once and never audited; the key logs in; revoking it stops it', async () => {
    const u = await ex.admin(ex.actors.admin, 'POST', '/admin/users', { email: `dave.${ex.zone_id}@kwx.test`, name: 'dave', role: 'CONSUMER' });
    expect(u.status).toBe(201);
    const k = await ex.admin(ex.actors.admin, 'POST', `/admin/users/${u.body.id}/keys`, { algorithm: 'HMAC_SHA256', label: 'bot' });
    expect(k.status).toBe(201);
    expect(k.body.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const audit = await lastAudit('key.create');
    expect(JSON.stringify(audit)).not.toContain(k.body.secret);
    const creds = { key_id: k.body.key_id, algorithm: 'HMAC_SHA256' as const, secret: k.body.secret };
    const c = await ex.anon();
    expect(await c.request(loginMessage(creds))).toMatchObject({ type: 'logged_in', role: 'CONSUMER' });
    expect((await ex.admin(ex.actors.operator, 'DELETE', `/admin/keys/${k.body.key_id}`)).status).toBe(200);
    const c2 = await ex.anon();
    expect(await c2.request(loginMessage(creds))).toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await lastAudit('key.revoke')).after.revoked_at).not.toBeNull();
    const role = await ex.admin(ex.actors.admin, 'PATCH', `/admin/users/${u.body.id}`, { role: 'PROSUMER' });
    expect(role.body).toMatchObject({ before: { role: 'CONSUMER' }, after: { role: 'PROSUMER' } });
    c.close();
    c2.close();
  });

  it('deposits credit the ledger (audited with the balance before and after); force cancel cancels a trader’s order', async () => {
    const d = await ex.admin(ex.actors.admin, 'POST', '/admin/deposits', { transfer_id: 'dep-carol-1', user_id: ex.actors.carol.user_id, currency: 'EUR', amount: '12.34' });
    expect(d).toMatchObject({ status: 201, body: { balance: { available_minor: '1234' } } });
    expect((await lastAudit('funds.deposit')).after).toMatchObject({ available_minor: '1234', amount: '12.34' });
    expect((await ex.admin(ex.actors.admin, 'POST', '/admin/withdrawals', { transfer_id: 'wd-carol-1', user_id: ex.actors.carol.user_id, currency: 'EUR', amount: '100.00' })).status).toBe(409);

    const a = await ex.login(ex.actors.alice);
    const o = await a.request({ type: 'place', zone_id: ex.zone_id, interval_id: ex.interval_id, client_order_id: 'fc', side: 'SELL', source: 'SOLAR', order_type: 'LIMIT', price: '0.3000', qty: '1.000' });
    const fc = await ex.admin(ex.actors.operator, 'POST', `/admin/orders/${o.order_id}/cancel`);
    expect(fc).toMatchObject({ status: 200, body: { order_id: o.order_id, status: 'CANCELLED' } });
    expect(ex.core.engine(ex.zone_id).order(o.order_id)).toBeUndefined();
    expect((await lastAudit('order.force_cancel')).before).toMatchObject({ order_id: o.order_id, user_id: ex.actors.alice.user_id });
    expect((await ex.admin(ex.actors.operator, 'POST', `/admin/orders/${o.order_id}/cancel`)).status).toBe(404);
    a.close();
  });

  it('the audit log is queryable page by page, newest first', async () => {
    const p1 = await ex.admin(ex.actors.operator, 'GET', '/admin/audit?limit=2');
    expect(p1.status).toBe(200);
    expect(p1.body.items).toHaveLength(2);
    expect(Number(p1.body.items[0].id)).toBeGreaterThan(Number(p1.body.items[1].id));
    const p2 = await ex.admin(ex.actors.operator, 'GET', `/admin/audit?limit=2&before=${p1.body.next_before}`);
    expect(Number(p2.body.items[0].id)).toBeLessThan(Number(p1.body.items[1].id));
    expect((await ex.admin(ex.actors.operator, 'GET', '/admin/orders?limit=5')).status).toBe(200);
    expect((await ex.admin(ex.actors.operator, 'GET', `/admin/price-history?zone_id=${ex.zone_id}`)).status).toBe(200);
  });

  it('/metrics carries RED metrics for messages and admin requests, without user labels', async () => {
    const text = await (await fetch(`${ex.http}/metrics`)).text();
    expect(text).toMatch(/kwx_admin_requests_total\{[^}]*route="POST \/admin\/zones\/:id\/halt"[^}]*status="403"/);
    expect(text).toMatch(/kwx_ws_messages_total\{/);
    expect(text).toMatch(/kwx_order_rejects_total\{[^}]*code="ZONE_HALTED"/);
    expect(text).toContain('kwx_ws_connections');
    expect(text).not.toMatch(/user_id=|key_id=/);
  });
});

describe('fee schedules (POST /admin/fees)', () => {
  it('the ledger charges a new schedule from its effective time without a restart; past or malformed times are refused; ADMIN only', async () => {
    const now = Date.now();
    const before = ex.ledger.feeAt(ex.zone_id, now);
    // in force now (default effective_from = now)
    const r = await ex.admin(ex.actors.admin, 'POST', '/admin/fees', { zone_id: ex.zone_id, fee_bps: 137, fee_per_kwh_minor: 2 });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ zone_id: String(ex.zone_id), fee_bps: 137, fee_per_kwh_minor: '2' });
    expect(r.body).not.toHaveProperty('effective_from_ms');
    expect(ex.ledger.feeAt(ex.zone_id, Date.now() + 1)).toMatchObject({ fee_bps: 137, fee_per_kwh_minor: 2n, source: 'ZONE_SCHEDULE' });
    // scheduled: the current fee stays until then, exactly to the millisecond
    const at = new Date(Math.ceil((Date.now() + 3_600_000) / 1000) * 1000 + 250);
    const later = await ex.admin(ex.actors.admin, 'POST', '/admin/fees', { zone_id: ex.zone_id, fee_bps: 200, effective_from: at.toISOString() });
    expect(later.status).toBe(201);
    expect(new Date(later.body.effective_from as string).getTime()).toBe(at.getTime());
    expect(ex.ledger.feeAt(ex.zone_id, at.getTime() - 1)).toMatchObject({ fee_bps: 137 });
    expect(ex.ledger.feeAt(ex.zone_id, at.getTime())).toMatchObject({ fee_bps: 200, fee_per_kwh_minor: 0n, effective_from_ms: at.getTime() });
    // the same zone and time again: a conflict, and the ledger keeps the first
    const dup = await ex.admin(ex.actors.admin, 'POST', '/admin/fees', { zone_id: ex.zone_id, fee_bps: 999, effective_from: at.toISOString() });
    expect(dup).toMatchObject({ status: 409, body: { code: 'CONFLICT' } });
    expect(ex.ledger.feeAt(ex.zone_id, at.getTime())).toMatchObject({ fee_bps: 200 });
    // refused: in the past, not a time, an operator
    const past = await ex.admin(ex.actors.admin, 'POST', '/admin/fees', { zone_id: ex.zone_id, fee_bps: 1, effective_from: new Date(now - 3_600_000).toISOString() });
    expect(past).toMatchObject({ status: 400, body: { code: 'INVALID_FIELD' } });
    expect(past.body.message).toContain('in the past');
    expect(await ex.admin(ex.actors.admin, 'POST', '/admin/fees', { fee_bps: 1, effective_from: 'tomorrow' })).toMatchObject({ status: 400, body: { code: 'INVALID_FIELD' } });
    expect((await ex.admin(ex.actors.operator, 'POST', '/admin/fees', { fee_bps: 1 })).status).toBe(403);
    expect(await ex.admin(ex.actors.admin, 'POST', '/admin/fees', { fee_bps: 10_001 })).toMatchObject({ status: 400 });
    expect(ex.ledger.feeAt(ex.zone_id, at.getTime() + 1)).toMatchObject({ fee_bps: 200 });
    expect(before.fee_bps).not.toBe(137);
    const [row] = await ex.db.sql<{ action: string }[]>`select action from audit_log where action = 'fees.set' order by id desc limit 1`;
    expect(row.action).toBe('fees.set');
  });
});
