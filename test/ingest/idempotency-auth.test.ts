import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encode, decode } from '@msgpack/msgpack';
import { invalidateIngestToken, issueDeviceToken, issueMeterToken } from '../../ingest/index.js';
import { codes, createDevice, createMeter, createUser, post, reading, slot, startHarness, type Harness } from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

async function snapshot(meterId: number) {
  await h.service.settle();
  const readings = await h.db.sql`select interval_start, production_wh, consumption_wh, quality, received_at from meter_readings where meter_id = ${meterId} order by 1`;
  const rollups = await h.db.sql`select scope, period, bucket_start, production_wh, consumption_wh, reading_count from reading_rollups where scope = 'METER' and scope_id = ${meterId} order by 2, 3`;
  return { readings, rollups };
}

describe('duplicates: idempotent resend vs conflict', () => {
  it('an identical resend answers DUPLICATE and changes nothing (rows, received_at, roll-ups)', async () => {
    const m = await createMeter(h.db, { serial: 'IDEM-1', user_id: h.user_id, zone_id: h.zone_id });
    const batch = JSON.stringify([reading('IDEM-1', slot(4), 100, 50), reading('IDEM-1', slot(3), 110, 40)]);
    const first = await post(`${h.base}/readings`, m.token, batch);
    expect(first.body).toMatchObject({ accepted: 2, duplicates: 0 });
    const before = await snapshot(m.id);
    expect(before.rollups.filter((r) => r.period === 'HOUR').reduce((a, r) => a + Number(r.reading_count), 0)).toBe(2);
    const again = await post(`${h.base}/readings`, m.token, batch);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ accepted: 0, duplicates: 2, rejected: 0, conflicts: 0 });
    expect(again.body.results.map((r: { status: string }) => r.status)).toEqual(['DUPLICATE', 'DUPLICATE']);
    expect(await snapshot(m.id)).toEqual(before);
    const [{ n }] = await h.db.sql`select count(*)::int as n from meter_reading_conflicts where meter_id = ${m.id}`;
    expect(n).toBe(0);
  });

  it('a resend with different values is DUPLICATE_CONFLICT: kept aside for review, the stored reading is never overwritten', async () => {
    const m = await createMeter(h.db, { serial: 'CONF-1', user_id: h.user_id, zone_id: h.zone_id });
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('CONF-1', slot(4), 100, 50)]));
    const before = await snapshot(m.id);
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([reading('CONF-1', slot(4), 999, 50), reading('CONF-1', slot(3), 1, 1)]));
    expect(r.body).toMatchObject({ accepted: 1, duplicates: 0, rejected: 1, conflicts: 1 });
    expect(codes(r.body)).toEqual({ 0: 'DUPLICATE_CONFLICT' });
    expect(r.body.results[0].message).toMatch(/production 100 Wh/);
    const after = await snapshot(m.id);
    expect(after.readings[0]).toEqual(before.readings[0]);
    // the same conflicting value sent again bumps a counter instead of adding a row
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('CONF-1', slot(4), 999, 50)]));
    const conflicts = await h.db.sql`
      select production_wh, stored_production_wh, status, received_count from meter_reading_conflicts where meter_id = ${m.id}`;
    expect(conflicts.map((c) => [Number(c.production_wh), Number(c.stored_production_wh), c.status, c.received_count])).toEqual([[999, 100, 'OPEN', 2]]);
  });

  it('a stored row the service did not know about (written by another process) is still detected as duplicate or conflict', async () => {
    const m = await createMeter(h.db, { serial: 'OTHERPROC-1', user_id: h.user_id, zone_id: h.zone_id });
    // rows written behind the service's back: its view of the meter has no latest reading
    await h.db.sql`
      insert into meter_readings (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality, received_at)
      values (${m.id}, ${slot(5)}, 15, 10, 10, 0, now()), (${m.id}, ${slot(4)}, 15, 20, 20, 0, now())`;
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([
      reading('OTHERPROC-1', slot(5), 10, 10),
      reading('OTHERPROC-1', slot(4), 21, 20),
      reading('OTHERPROC-1', slot(3), 30, 30),
    ]));
    expect(r.body).toMatchObject({ accepted: 1, duplicates: 1, conflicts: 1 });
    expect(codes(r.body)).toEqual({ 0: 'DUPLICATE', 1: 'DUPLICATE_CONFLICT' });
    const rows = await h.db.sql`select production_wh from meter_readings where meter_id = ${m.id} order by interval_start`;
    expect(rows.map((x) => Number(x.production_wh))).toEqual([10, 20, 30]);
  });

  it('the same interval twice in one batch: identical → DUPLICATE, different → DUPLICATE_CONFLICT (first one stored)', async () => {
    const m = await createMeter(h.db, { serial: 'REP-1', user_id: h.user_id, zone_id: h.zone_id });
    const r = await post(`${h.base}/readings`, m.token, JSON.stringify([
      reading('REP-1', slot(4), 10, 10),
      reading('REP-1', slot(4), 10, 10),
      reading('REP-1', slot(4), 10, 11),
    ]));
    expect(r.body).toMatchObject({ accepted: 1, duplicates: 1, conflicts: 1 });
    expect(codes(r.body)).toEqual({ 1: 'DUPLICATE', 2: 'DUPLICATE_CONFLICT' });
    const rows = await h.db.sql`select consumption_wh from meter_readings where meter_id = ${m.id}`;
    expect(rows.map((x) => Number(x.consumption_wh))).toEqual([10]);
  });

  it('telemetry: an identical point resent is DUPLICATE, a different value for the same time is DUPLICATE_CONFLICT', async () => {
    const d = await createDevice(h.db, { serial: 'INV-DUP', user_id: h.user_id });
    const time = new Date(Date.now() - 60_000).toISOString();
    await post(`${h.base}/telemetry`, d.token, JSON.stringify([{ metric: 'ac_power', value: 5, unit: 'kW', time }]));
    const r = await post(`${h.base}/telemetry`, d.token, JSON.stringify([
      { metric: 'ac_power', value: 5, unit: 'kW', time },
      { metric: 'ac_power', value: 6, unit: 'kW', time },
    ]));
    expect(codes(r.body)).toEqual({ 0: 'DUPLICATE', 1: 'DUPLICATE_CONFLICT' });
    const [row] = await h.db.sql`select value from device_telemetry where device_id = ${d.id}`;
    expect(row.value).toBe(5);
  });
});

describe('device-token auth', () => {
  it('a meter token cannot write another meter\'s readings (FORBIDDEN_METER) and the other meter gets nothing', async () => {
    const other = await createUser(h.db, 'neighbour');
    const a = await createMeter(h.db, { serial: 'AUTH-A', user_id: h.user_id, zone_id: h.zone_id });
    const b = await createMeter(h.db, { serial: 'AUTH-B', user_id: other, zone_id: h.zone_id });
    const r = await post(`${h.base}/readings`, a.token, JSON.stringify([reading('AUTH-B', slot(3), 1, 1), reading('AUTH-A', slot(3), 2, 2)]));
    expect(r.status).toBe(200);
    expect(codes(r.body)).toEqual({ 0: 'FORBIDDEN_METER' });
    const [{ n }] = await h.db.sql`select count(*)::int as n from meter_readings where meter_id = ${b.id}`;
    expect(n).toBe(0);
    expect((await h.db.sql`select count(*)::int as n from meter_readings where meter_id = ${a.id}`)[0].n).toBe(1);
    // readings without a serial are the token's own meter
    const own = await post(`${h.base}/readings`, b.token, JSON.stringify([{ interval_start: slot(2), interval_minutes: 15, production_wh: 3, consumption_wh: 3 }]));
    expect(own.body.accepted).toBe(1);
  });

  it('no token, a malformed token, a wrong secret and a replaced token are all 401 UNAUTHORIZED', async () => {
    const m = await createMeter(h.db, { serial: 'AUTH-C', user_id: h.user_id, zone_id: h.zone_id });
    const body = JSON.stringify([reading('AUTH-C', slot(3), 1, 1)]);
    const forged = m.token.slice(0, -4) + (m.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    for (const token of [null, 'garbage', forged]) {
      const r = await post(`${h.base}/readings`, token, body);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('UNAUTHORIZED');
    }
    const { issueMeterToken } = await import('../../ingest/index.js');
    const fresh = await issueMeterToken(h.db.sql, m.id);
    h.service.invalidate();
    expect((await post(`${h.base}/readings`, m.token, body)).status).toBe(401);
    expect((await post(`${h.base}/readings`, fresh, body)).status).toBe(200);
  });

  it('a device token writes only its own telemetry and no meter readings; a meter token writes no telemetry', async () => {
    const d1 = await createDevice(h.db, { serial: 'DEV-A', user_id: h.user_id });
    await createDevice(h.db, { serial: 'DEV-B', user_id: h.user_id });
    const m = await createMeter(h.db, { serial: 'AUTH-D', user_id: h.user_id, zone_id: h.zone_id });
    const p = { metric: 'soc', value: 50, unit: '%', time: new Date(Date.now() - 60_000).toISOString() };
    const r = await post(`${h.base}/telemetry`, d1.token, JSON.stringify([{ ...p, device_serial: 'DEV-B' }]));
    expect(codes(r.body)).toEqual({ 0: 'FORBIDDEN_DEVICE' });
    const dr = await post(`${h.base}/readings`, d1.token, JSON.stringify([reading('AUTH-D', slot(3), 1, 1)]));
    expect(dr.status).toBe(403);
    expect(dr.body.error.code).toBe('FORBIDDEN_METER');
    const mt = await post(`${h.base}/telemetry`, m.token, JSON.stringify([p]));
    expect(mt.status).toBe(403);
    expect(mt.body.error.code).toBe('FORBIDDEN_DEVICE');
  });
});

describe('WebSocket stream', () => {
  const open = (url: string, token?: string): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  const next = (ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> =>
    new Promise((resolve) => ws.once('message', (data: Buffer, binary: boolean) => resolve({ data, binary })));

  it('refuses the upgrade without a valid token', async () => {
    await expect(open(`${h.ws_base}/stream`)).rejects.toThrow('HTTP 401');
    await expect(open(`${h.ws_base}/stream?token=kwx_m_1_${'x'.repeat(43)}`)).rejects.toThrow('HTTP 401');
  });

  it('a device streams telemetry over the same route with its device token', async () => {
    const d = await createDevice(h.db, { serial: 'WS-DEV', user_id: h.user_id });
    const ws = await open(`${h.ws_base}/stream`, d.token);
    try {
      const reply = next(ws);
      ws.send(JSON.stringify({ id: 9, telemetry: [{ metric: 'soc', value: 81.5, unit: '%', time: new Date(Date.now() - 1000).toISOString() }] }));
      expect(JSON.parse((await reply).data.toString())).toMatchObject({ type: 'ack', id: 9, accepted: 1 });
      const [row] = await h.db.sql`select value, unit from device_latest where device_id = ${d.id} and metric = 'soc'`;
      expect(row).toEqual({ value: 81.5, unit: '%' });
    } finally {
      ws.close();
    }
  });

  it('a meter streams readings (JSON and MessagePack frames) and is acked after they are stored', async () => {
    const m = await createMeter(h.db, { serial: 'WS-1', user_id: h.user_id, zone_id: h.zone_id });
    const ws = await open(`${h.ws_base}/stream?token=${m.token}`);
    try {
      let reply = next(ws);
      ws.send(JSON.stringify({ id: 'a1', readings: [reading('WS-1', slot(3), 5, 6)] }));
      const ack = JSON.parse((await reply).data.toString());
      expect(ack).toMatchObject({ type: 'ack', seq: 1, id: 'a1', accepted: 1 });
      reply = next(ws);
      ws.send(encode({ id: 2, readings: [reading('WS-1', slot(2), 7, 8), reading('OTHER', slot(2), 7, 8)] }));
      const bin = await reply;
      expect(bin.binary).toBe(true);
      expect(decode(bin.data)).toMatchObject({ type: 'ack', seq: 2, id: 2, accepted: 1, rejected: 1 });
      const rows = await h.db.sql`select consumption_wh from meter_readings where meter_id = ${m.id} order by interval_start`;
      expect(rows.map((r) => Number(r.consumption_wh))).toEqual([6, 8]);
    } finally {
      ws.close();
    }
  });
});

describe('token rotation', () => {
  const open = (url: string, token: string): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });

  it('invalidateIngestToken makes a rotation effect at once: the old token is refused over HTTP, its open stream is ended, the new one works', async () => {
    const m = await createMeter(h.db, { serial: 'ROT-1', user_id: h.user_id, zone_id: h.zone_id });
    const body = (k: number) => JSON.stringify([reading('ROT-1', slot(k), 1, 1)]);
    expect((await post(`${h.base}/readings`, m.token, body(9))).status).toBe(200);
    const ws = await open(`${h.ws_base}/stream`, m.token);
    const messages: Record<string, unknown>[] = [];
    ws.on('message', (d: Buffer) => messages.push(JSON.parse(d.toString())));
    const closed = new Promise<number>((r) => ws.once('close', (code: number) => r(code)));

    const fresh = await issueMeterToken(h.db.sql, m.id);
    // without the call, this process still trusts its cached verification (other processes: up to AUTH_CACHE_TTL_MS)
    expect((await post(`${h.base}/readings`, m.token, body(8))).status).toBe(200);

    invalidateIngestToken('meter', m.id);
    const refused = await post(`${h.base}/readings`, m.token, body(7));
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('UNAUTHORIZED');
    ws.send(JSON.stringify({ id: 'after-rotation', readings: JSON.parse(body(6)) }));
    expect(await closed).toBe(4401);
    expect(messages).toEqual([expect.objectContaining({ type: 'error', id: 'after-rotation', code: 'UNAUTHORIZED' })]);
    expect((await post(`${h.base}/readings`, fresh, body(5))).status).toBe(200);

    await h.service.settle();
    const rows = await h.db.sql`select interval_start from meter_readings where meter_id = ${m.id} order by 1`;
    expect(rows.map((r) => r.interval_start.toISOString())).toEqual([slot(9), slot(8), slot(5)]);
  });

  it('a rotated device token is refused at once too, and only that device is affected', async () => {
    const a = await createDevice(h.db, { serial: 'ROT-DA', user_id: h.user_id });
    const b = await createDevice(h.db, { serial: 'ROT-DB', user_id: h.user_id });
    const p = (s: number) => JSON.stringify([{ metric: 'soc', value: 50, unit: '%', time: new Date(Date.now() - s * 1000).toISOString() }]);
    expect((await post(`${h.base}/telemetry`, a.token, p(30))).status).toBe(200);
    expect((await post(`${h.base}/telemetry`, b.token, p(30))).status).toBe(200);
    await issueDeviceToken(h.db.sql, a.id);
    invalidateIngestToken('device', a.id);
    expect((await post(`${h.base}/telemetry`, a.token, p(20))).status).toBe(401);
    expect((await post(`${h.base}/telemetry`, b.token, p(20))).status).toBe(200);
  });
});

