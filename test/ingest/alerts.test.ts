import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertError } from '../../ingest/index.js';
import { createDevice, createMeter, createUser, post, reading, slot, startHarness, type Harness } from './helpers.js';

let clock = Date.now();
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ now: () => clock });
});
afterAll(async () => {
  await h.close();
});

async function notifications(userId: number) {
  return h.db.sql`select title, data from notifications where user_id = ${userId} and kind = 'DEVICE_ALERT' order by id`;
}

describe('alert rules', () => {
  it('inverter power < 10 kW for 5 min fires once held, resolves when it clears, respects the cooldown, and can be acknowledged', async () => {
    const owner = await createUser(h.db, 'pv-owner');
    const d = await createDevice(h.db, { serial: 'INV-AL1', user_id: owner, kind: 'INVERTER' });
    const rule = await h.service.alerts.createRule({
      user_id: owner, name: 'Inverter output low', subject_kind: 'DEVICE', device_kind: 'INVERTER',
      metric: 'ac_power', operator: 'lt', threshold: 10, unit: 'kW', duration_s: 300, cooldown_s: 600, severity: 'WARNING',
    });
    const t0 = clock - 40 * 60_000;
    const watts = (minute: number): number => {
      if (minute < 4) return 12_000;
      if (minute < 10) return 8_000; // low from minute 4; held 5 min at minute 9 → fires
      if (minute < 11) return 11_000; // clears → resolved
      return 5_000; // low again from 11: held 5 min at 16, but the cooldown (10 min after 9) ends at 19
    };
    const points = Array.from({ length: 21 }, (_, m) => ({ metric: 'ac_power', value: watts(m), unit: 'W', time: new Date(t0 + m * 60_000).toISOString() }));
    const r = await post(`${h.base}/telemetry`, d.token, JSON.stringify(points));
    expect(r.body.accepted).toBe(21);
    await h.service.settle();
    let alerts = await h.service.alerts.listAlerts(owner);
    expect(alerts.map((a) => [a.status, a.fired_at.getTime() - t0, a.started_at.getTime() - t0])).toEqual([
      ['RESOLVED', 9 * 60_000, 4 * 60_000],
      ['FIRING', 19 * 60_000, 11 * 60_000],
    ]);
    expect(alerts[0].resolved_at?.getTime()).toBe(t0 + 10 * 60_000);
    expect(alerts[0].resolved_by).toBeNull(); // automatic
    expect(alerts[1].message).toMatch(/ac_power of device \d+ is 5 kW \(< 10 kW\)/);
    expect(alerts.every((a) => a.rule_id === rule.id && a.severity === 'WARNING')).toBe(true);

    const acked = await h.service.alerts.acknowledge(alerts[1].id, owner);
    expect(acked.status).toBe('ACKNOWLEDGED');
    expect(acked.acknowledged_by).toBe(owner);
    const stranger = await createUser(h.db, 'stranger');
    await expect(h.service.alerts.acknowledge(alerts[1].id, stranger)).rejects.toBeInstanceOf(AlertError);

    await post(`${h.base}/telemetry`, d.token, JSON.stringify([{ metric: 'ac_power', value: 10.5, unit: 'kW', time: new Date(t0 + 21 * 60_000).toISOString() }]));
    await h.service.settle();
    alerts = await h.service.alerts.listAlerts(owner);
    expect(alerts.map((a) => a.status)).toEqual(['RESOLVED', 'RESOLVED']);
    const notes = await notifications(owner);
    expect(notes.map((n) => [n.title, n.data.status])).toEqual([
      ['WARNING: Inverter output low', 'FIRING'],
      ['Resolved: Inverter output low', 'RESOLVED'],
      ['WARNING: Inverter output low', 'FIRING'],
      ['Resolved: Inverter output low', 'RESOLVED'],
    ]);
  });

  it('a rule watches only its owner\'s devices; a manual resolve is recorded with who resolved it', async () => {
    const owner = await createUser(h.db, 'owner2');
    const other = await createUser(h.db, 'other2');
    const mine = await createDevice(h.db, { serial: 'BAT-1', user_id: owner, kind: 'BATTERY' });
    const theirs = await createDevice(h.db, { serial: 'BAT-2', user_id: other, kind: 'BATTERY' });
    await h.service.alerts.createRule({ user_id: owner, name: 'Battery hot', subject_kind: 'DEVICE', metric: 'temperature', operator: 'gte', threshold: 45, unit: 'degC', severity: 'CRITICAL' });
    const hot = [{ metric: 'temperature', value: 50, unit: 'degC', time: new Date(clock - 60_000).toISOString() }];
    await post(`${h.base}/telemetry`, theirs.token, JSON.stringify(hot));
    await post(`${h.base}/telemetry`, mine.token, JSON.stringify(hot));
    await h.service.settle();
    expect(await h.service.alerts.listAlerts(other)).toEqual([]);
    const [a] = await h.service.alerts.listAlerts(owner);
    expect(a).toMatchObject({ status: 'FIRING', subject_id: mine.id, severity: 'CRITICAL' });
    const resolved = await h.service.alerts.resolve(a.id, owner);
    expect(resolved).toMatchObject({ status: 'RESOLVED', resolved_by: owner });
    await expect(h.service.alerts.resolve(a.id, owner)).rejects.toMatchObject({ code: 'ALERT_RESOLVED' });
  });

  it('a reading rule (consumption_wh > 2000 for 30 min) fires on stored readings and resolves when consumption drops', async () => {
    const owner = await createUser(h.db, 'heavy-user');
    const m = await createMeter(h.db, { serial: 'HEAVY-1', user_id: owner, zone_id: h.zone_id, max_power_w: 12_000 });
    await h.service.alerts.createRule({ user_id: owner, name: 'High import', subject_kind: 'METER', metric: 'consumption_wh', operator: 'gt', threshold: 2000, unit: 'Wh', duration_s: 1800, severity: 'INFO' });
    const cons = [500, 2100, 2200, 2300, 400]; // above from the 2nd interval; held 30 min at the 4th
    const batch = cons.map((c, i) => reading('HEAVY-1', slot(10 - i, 15, clock), 0, c));
    expect((await post(`${h.base}/readings`, m.token, JSON.stringify(batch))).body.accepted).toBe(5);
    await h.service.settle();
    const [a] = await h.service.alerts.listAlerts(owner);
    expect(a).toMatchObject({ status: 'RESOLVED', subject_kind: 'METER', subject_id: m.id, value: 2300 });
    expect(a.started_at.toISOString()).toBe(slot(9, 15, clock));
    expect(a.fired_at.toISOString()).toBe(slot(7, 15, clock));
    expect(a.resolved_at?.toISOString()).toBe(slot(6, 15, clock));
  });

  it('meter silent for 30 min fires once, and the next reading resolves it', async () => {
    const owner = await createUser(h.db, 'meter-owner');
    const m = await createMeter(h.db, { serial: 'SIL-1', user_id: owner, zone_id: h.zone_id });
    await h.service.alerts.createRule({ user_id: owner, name: 'Meter silent', subject_kind: 'METER', metric: 'no_data', operator: 'gte', threshold: 0, duration_s: 1800, severity: 'WARNING' });
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('SIL-1', slot(2, 15, clock), 1, 1)]));
    await h.service.settle();
    expect(await h.service.alerts.checkSilence()).toBe(0);
    clock += 29 * 60_000;
    expect(await h.service.alerts.checkSilence()).toBe(0);
    clock += 2 * 60_000;
    expect(await h.service.alerts.checkSilence()).toBe(1);
    expect(await h.service.alerts.checkSilence()).toBe(0); // still open: no second alert
    const [open] = await h.service.alerts.listAlerts(owner);
    expect(open).toMatchObject({ status: 'FIRING', subject_kind: 'METER', subject_id: m.id });
    expect(open.message).toMatch(/sent no readings for 18\d\d s/);
    await post(`${h.base}/readings`, m.token, JSON.stringify([reading('SIL-1', slot(1, 15, clock), 1, 1)]));
    await h.service.settle();
    const [done] = await h.service.alerts.listAlerts(owner);
    expect(done.status).toBe('RESOLVED');
    expect((await notifications(owner)).length).toBe(2);
  });
});
