// Alert rules on telemetry and readings, evaluated on data that has been stored.
//
// A rule holds for a subject (device or meter) when `value <operator> threshold` (value converted
// to the rule's unit). It FIRES when it has held continuously for duration_s (data time), unless
// an alert for the same rule and subject is still open, or the last one fired less than
// cooldown_s ago (data time). An open alert is RESOLVED automatically by the first value for
// which the rule no longer holds, or by the owner; the owner may ACKNOWLEDGE it first. Firing and
// automatic resolution notify the owner (notifications, kind DEVICE_ALERT).
// Meter rules on metric `no_data` hold when a meter has sent nothing for duration_s (wall clock,
// checked every SILENCE_CHECK_MS and resolved by the next reading).
// Evaluation is serial (one chain) so that state transitions never race. Points older than the
// last one evaluated for a rule and subject are skipped (a late point does not rewrite history).
import type { Sql } from '../schema/db.js';
import type { Logger } from '../schema/log.js';
import { convertUnit, isKnownUnit } from './units.js';
import type { DeviceContext, MeterContext } from './types.js';

export type Operator = 'lt' | 'lte' | 'gt' | 'gte' | 'eq' | 'ne';
export type Severity = 'INFO' | 'WARNING' | 'CRITICAL';
export type SubjectKind = 'DEVICE' | 'METER';
export const METER_METRICS = ['production_wh', 'consumption_wh', 'no_data'] as const;

export interface AlertRuleInput {
  user_id: number;
  name: string;
  subject_kind: SubjectKind;
  /** only this device / meter (default: every one the user owns) */
  device_id?: number | null;
  meter_id?: number | null;
  /** only devices of this kind (INVERTER, BATTERY, …) */
  device_kind?: string | null;
  metric: string;
  operator: Operator;
  threshold: number;
  /** unit of the threshold; values in other units of the same quantity are converted */
  unit?: string;
  duration_s?: number;
  cooldown_s?: number;
  severity: Severity;
}

export interface AlertRule extends Required<Omit<AlertRuleInput, 'device_id' | 'meter_id' | 'device_kind'>> {
  id: number;
  device_id: number | null;
  meter_id: number | null;
  device_kind: string | null;
  is_active: boolean;
}

export interface Alert {
  id: number;
  rule_id: number;
  user_id: number;
  subject_kind: SubjectKind;
  subject_id: number;
  status: 'FIRING' | 'ACKNOWLEDGED' | 'RESOLVED';
  severity: Severity;
  value: number | null;
  message: string;
  started_at: Date;
  fired_at: Date;
  acknowledged_at: Date | null;
  acknowledged_by: number | null;
  resolved_at: Date | null;
  resolved_by: number | null;
}

export class AlertError extends Error {
  constructor(
    readonly code: 'INVALID_RULE' | 'ALERT_NOT_FOUND' | 'ALERT_RESOLVED',
    message: string,
  ) {
    super(message);
    this.name = 'AlertError';
  }
}

interface State {
  breach_since_ms: number | null;
  last_fired_ms: number | null;
  last_ts_ms: number | null;
  open_alert_id: number | null;
}

export interface Point {
  metric: string;
  ts_ms: number;
  value: number;
  unit: string;
}

const OPS: Record<Operator, (a: number, b: number) => boolean> = {
  lt: (a, b) => a < b,
  lte: (a, b) => a <= b,
  gt: (a, b) => a > b,
  gte: (a, b) => a >= b,
  eq: (a, b) => a === b,
  ne: (a, b) => a !== b,
};
const OP_TEXT: Record<Operator, string> = { lt: '<', lte: '≤', gt: '>', gte: '≥', eq: '=', ne: '≠' };

export class AlertEngine {
  private rules: AlertRule[] = [];
  private rulesLoadedMs = -Infinity;
  private readonly states = new Map<string, State>();
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly rulesTtlMs: number,
  ) {}

  async createRule(input: AlertRuleInput): Promise<AlertRule> {
    checkRule(input);
    const [row] = await this.sql<RuleRow[]>`
      insert into alert_rules (user_id, name, subject_kind, device_id, meter_id, device_kind, metric, operator, threshold, unit, duration_s, cooldown_s, severity)
      values (${input.user_id}, ${input.name}, ${input.subject_kind}, ${input.device_id ?? null}, ${input.meter_id ?? null}, ${input.device_kind ?? null},
              ${input.metric}, ${input.operator}, ${input.threshold}, ${input.unit ?? ''}, ${input.duration_s ?? 0}, ${input.cooldown_s ?? 0}, ${input.severity})
      returning *`;
    this.rulesLoadedMs = -Infinity;
    return toRule(row);
  }

  async setRuleActive(ruleId: number, active: boolean): Promise<void> {
    await this.sql`update alert_rules set is_active = ${active}, updated_at = now() where id = ${ruleId}`;
    this.rulesLoadedMs = -Infinity;
  }

  async listAlerts(userId: number, status?: Alert['status']): Promise<Alert[]> {
    const rows = await this.sql<AlertRow[]>`
      select * from alerts where user_id = ${userId} ${status === undefined ? this.sql`` : this.sql`and status = ${status}`} order by id`;
    return rows.map(toAlert);
  }

  /** The owner acknowledges a firing alert (it stays open until resolved). */
  async acknowledge(alertId: number, userId: number): Promise<Alert> {
    const rows = await this.sql<AlertRow[]>`
      update alerts set status = 'ACKNOWLEDGED', acknowledged_at = ${new Date(this.now())}, acknowledged_by = ${userId}
      where id = ${alertId} and user_id = ${userId} and status = 'FIRING' returning *`;
    if (rows.length === 1) return toAlert(rows[0]);
    return this.explainMissing(alertId, userId);
  }

  /** The owner resolves an open alert by hand. */
  async resolve(alertId: number, userId: number): Promise<Alert> {
    return this.enqueue(async () => {
      const rows = await this.sql<AlertRow[]>`
        update alerts set status = 'RESOLVED', resolved_at = ${new Date(this.now())}, resolved_by = ${userId}
        where id = ${alertId} and user_id = ${userId} and status in ('FIRING', 'ACKNOWLEDGED') returning *`;
      if (rows.length !== 1) return this.explainMissing(alertId, userId);
      const a = toAlert(rows[0]);
      const st = this.states.get(key(a.rule_id, a.subject_kind, a.subject_id));
      if (st !== undefined && st.open_alert_id === a.id) st.open_alert_id = null;
      return a;
    });
  }

  private async explainMissing(alertId: number, userId: number): Promise<never> {
    const rows = await this.sql<{ status: string }[]>`select status from alerts where id = ${alertId} and user_id = ${userId}`;
    if (rows.length === 0) throw new AlertError('ALERT_NOT_FOUND', `alert ${alertId} does not exist or belongs to someone else`);
    throw new AlertError('ALERT_RESOLVED', `alert ${alertId} is ${rows[0].status}`);
  }

  /** Evaluates stored telemetry points of one device (called after they are durable). */
  onTelemetry(device: DeviceContext, points: Point[]): void {
    if (points.length === 0) return;
    void this.enqueue(async () => {
      await this.refreshRules();
      for (const rule of this.rules) {
        if (rule.subject_kind !== 'DEVICE' || rule.user_id !== device.user_id) continue;
        if (rule.device_id !== null && rule.device_id !== device.id) continue;
        if (rule.device_kind !== null && rule.device_kind !== device.kind) continue;
        const mine = points.filter((p) => p.metric === rule.metric).sort((a, b) => a.ts_ms - b.ts_ms);
        for (const p of mine) await this.evaluate(rule, 'DEVICE', device.id, p.ts_ms, p.value, p.unit);
      }
    });
  }

  /** Evaluates stored readings of one meter (production_wh / consumption_wh rules) and ends its silence. */
  onReadings(meter: MeterContext, rows: { start_s: Float64Array; production_wh: Float64Array; consumption_wh: Float64Array; n: number }): void {
    if (rows.n === 0) return;
    void this.enqueue(async () => {
      await this.refreshRules();
      for (const rule of this.rules) {
        if (rule.subject_kind !== 'METER' || rule.user_id !== meter.user_id) continue;
        if (rule.meter_id !== null && rule.meter_id !== meter.id) continue;
        if (rule.metric === 'no_data') {
          await this.evaluate(rule, 'METER', meter.id, this.now(), 0, '', false);
          continue;
        }
        const col = rule.metric === 'production_wh' ? rows.production_wh : rows.consumption_wh;
        for (let i = 0; i < rows.n; i++) await this.evaluate(rule, 'METER', meter.id, rows.start_s[i] * 1000, col[i], 'Wh');
      }
    });
  }

  /** Evaluates every `no_data` rule against the meters' last reception time; returns alerts fired. */
  checkSilence(): Promise<number> {
    return this.enqueue(async () => {
      await this.refreshRules();
      const nowMs = this.now();
      let fired = 0;
      for (const rule of this.rules) {
        if (rule.subject_kind !== 'METER' || rule.metric !== 'no_data') continue;
        const meters = await this.sql<{ id: string; last_seen: Date }[]>`
          select m.id, coalesce(l.last_received_at, m.registered_at) as last_seen
          from smart_meters m left join meter_latest l on l.meter_id = m.id
          where m.user_id = ${rule.user_id} and m.status = 'ACTIVE' ${rule.meter_id === null ? this.sql`` : this.sql`and m.id = ${rule.meter_id}`}`;
        for (const m of meters) {
          const silentMs = nowMs - m.last_seen.getTime();
          const silent = silentMs >= rule.duration_s * 1000;
          const st = await this.state(rule.id, 'METER', Number(m.id));
          const before = st.open_alert_id;
          // silence "started" when the meter was last heard from
          if (silent && st.breach_since_ms === null) st.breach_since_ms = m.last_seen.getTime();
          await this.evaluate(rule, 'METER', Number(m.id), nowMs, silentMs / 1000, 's', silent);
          if (before === null && st.open_alert_id !== null) fired++;
        }
      }
      return fired;
    });
  }

  /** Resolves when every evaluation queued so far has finished. */
  idle(): Promise<void> {
    return this.enqueue(async () => {});
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => {},
      (err) => this.log.error('alert evaluation failed', { error: (err as Error).message }),
    );
    return run;
  }

  private async refreshRules(): Promise<void> {
    if (this.now() - this.rulesLoadedMs < this.rulesTtlMs) return;
    const rows = await this.sql<RuleRow[]>`select * from alert_rules where is_active order by id`;
    this.rules = rows.map(toRule);
    this.rulesLoadedMs = this.now();
  }

  private async state(ruleId: number, kind: SubjectKind, subjectId: number): Promise<State> {
    const k = key(ruleId, kind, subjectId);
    let st = this.states.get(k);
    if (st !== undefined) return st;
    const [s] = await this.sql<{ breach_since: Date | null; last_fired_at: Date | null; last_ts: Date | null }[]>`
      select breach_since, last_fired_at, last_ts from alert_rule_state where rule_id = ${ruleId} and subject_kind = ${kind} and subject_id = ${subjectId}`;
    const [open] = await this.sql<{ id: string }[]>`
      select id from alerts where rule_id = ${ruleId} and subject_kind = ${kind} and subject_id = ${subjectId} and status in ('FIRING', 'ACKNOWLEDGED')`;
    st = {
      breach_since_ms: s?.breach_since?.getTime() ?? null,
      last_fired_ms: s?.last_fired_at?.getTime() ?? null,
      last_ts_ms: s?.last_ts?.getTime() ?? null,
      open_alert_id: open === undefined ? null : Number(open.id),
    };
    this.states.set(k, st);
    return st;
  }

  /**
   * One value of one rule for one subject at data time tsMs. `holds` overrides the comparison
   * (no_data rules decide it themselves).
   */
  private async evaluate(rule: AlertRule, kind: SubjectKind, subjectId: number, tsMs: number, value: number, unit: string, holds?: boolean): Promise<void> {
    try {
      await this.evaluateCached(rule, kind, subjectId, tsMs, value, unit, holds);
    } catch (err) {
      // A write failed (the database went away): it may have committed all the same, so the
      // cached state is no longer known to match the database; it is read again next time.
      this.states.delete(key(rule.id, kind, subjectId));
      throw err;
    }
  }

  private async evaluateCached(rule: AlertRule, kind: SubjectKind, subjectId: number, tsMs: number, value: number, unit: string, holds?: boolean): Promise<void> {
    const st = await this.state(rule.id, kind, subjectId);
    if (holds === undefined) {
      if (st.last_ts_ms !== null && tsMs <= st.last_ts_ms) return;
      const v = rule.unit === '' || unit === '' ? value : convertUnit(value, unit, rule.unit);
      if (v === null) return;
      value = v;
      holds = OPS[rule.operator](v, rule.threshold);
    }
    st.last_ts_ms = Math.max(st.last_ts_ms ?? tsMs, tsMs);
    let changed = false;
    if (holds) {
      if (st.breach_since_ms === null) {
        st.breach_since_ms = tsMs;
        changed = true;
      }
      const heldMs = tsMs - st.breach_since_ms;
      const cooled = st.last_fired_ms === null || tsMs - st.last_fired_ms >= rule.cooldown_s * 1000;
      if (st.open_alert_id === null && heldMs >= rule.duration_s * 1000 && cooled) {
        st.open_alert_id = await this.fire(rule, kind, subjectId, st.breach_since_ms, tsMs, value);
        st.last_fired_ms = tsMs;
        changed = true;
      }
    } else {
      if (st.breach_since_ms !== null) {
        st.breach_since_ms = null;
        changed = true;
      }
      if (st.open_alert_id !== null) {
        await this.autoResolve(rule, st.open_alert_id, tsMs, value);
        st.open_alert_id = null;
        changed = true;
      }
    }
    if (changed) {
      await this.sql`
        insert into alert_rule_state (rule_id, subject_kind, subject_id, breach_since, last_fired_at, last_ts)
        values (${rule.id}, ${kind}, ${subjectId}, ${ms(st.breach_since_ms)}, ${ms(st.last_fired_ms)}, ${ms(st.last_ts_ms)})
        on conflict (rule_id, subject_kind, subject_id) do update
        set breach_since = excluded.breach_since, last_fired_at = excluded.last_fired_at, last_ts = excluded.last_ts`;
    }
  }

  private async fire(rule: AlertRule, kind: SubjectKind, subjectId: number, startedMs: number, firedMs: number, value: number): Promise<number> {
    const subject = `${kind === 'DEVICE' ? 'device' : 'meter'} ${subjectId}`;
    const message =
      rule.metric === 'no_data'
        ? `${subject} has sent no readings for ${Math.round(value)} s (rule: silent for ${rule.duration_s} s)`
        : `${rule.metric} of ${subject} is ${round(value)}${rule.unit === '' ? '' : ' ' + rule.unit} (${OP_TEXT[rule.operator]} ${rule.threshold}${rule.unit === '' ? '' : ' ' + rule.unit}) since ${new Date(startedMs).toISOString()}`;
    const data = { rule_id: rule.id, subject_kind: kind, subject_id: subjectId, metric: rule.metric, value, severity: rule.severity, status: 'FIRING' };
    // One statement (atomic on its own): never sql.begin(), whose ROLLBACK on a connection that has
    // just dropped crashes the process from a timer (postgres.js 3.4.9, porsager/postgres#1208).
    const [a] = await this.sql<{ id: string }[]>`
      with a as (
        insert into alerts (rule_id, user_id, subject_kind, subject_id, status, severity, value, message, started_at, fired_at)
        values (${rule.id}, ${rule.user_id}, ${kind}, ${subjectId}, 'FIRING', ${rule.severity}, ${value}, ${message}, ${new Date(startedMs)}, ${new Date(firedMs)})
        returning id
      ), n as (
        insert into notifications (user_id, kind, title, body, data)
        select ${rule.user_id}, 'DEVICE_ALERT', ${`${rule.severity}: ${rule.name}`.slice(0, 200)}, ${message},
          ${this.sql.json(data)}::jsonb || jsonb_build_object('alert_id', a.id)
        from a
      )
      select id from a`;
    return Number(a.id);
  }

  private async autoResolve(rule: AlertRule, alertId: number, tsMs: number, value: number): Promise<void> {
    const data = { alert_id: alertId, rule_id: rule.id, metric: rule.metric, value, status: 'RESOLVED' };
    // one statement; nothing is notified when the alert was resolved by hand meanwhile
    await this.sql`
      with u as (
        update alerts set status = 'RESOLVED', resolved_at = ${new Date(tsMs)}
        where id = ${alertId} and status in ('FIRING', 'ACKNOWLEDGED') returning id
      )
      insert into notifications (user_id, kind, title, body, data)
      select ${rule.user_id}, 'DEVICE_ALERT', ${`Resolved: ${rule.name}`.slice(0, 200)}, ${`the condition no longer holds at ${new Date(tsMs).toISOString()}`}, ${this.sql.json(data)}
      from u`;
  }
}

function checkRule(r: AlertRuleInput): void {
  const bad = (m: string): never => {
    throw new AlertError('INVALID_RULE', m);
  };
  if (!(r.operator in OPS)) bad(`operator must be one of ${Object.keys(OPS).join(', ')}`);
  if (!Number.isFinite(r.threshold)) bad('threshold must be a finite number');
  if (!/^[a-z][a-z0-9_.]{0,63}$/.test(r.metric)) bad('metric must be lower-case letters, digits, "_" or "."');
  if (r.subject_kind === 'METER' && !(METER_METRICS as readonly string[]).includes(r.metric)) bad(`meter rules watch one of ${METER_METRICS.join(', ')}`);
  if (r.unit !== undefined && r.unit !== '' && !isKnownUnit(r.unit)) bad(`unknown unit ${r.unit}`);
  for (const [k, v] of [['duration_s', r.duration_s], ['cooldown_s', r.cooldown_s]] as const) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0 || v > 2_592_000)) bad(`${k} must be whole seconds from 0 to 30 days`);
  }
}

const key = (ruleId: number, kind: string, id: number): string => `${ruleId}:${kind}:${id}`;
const ms = (v: number | null): Date | null => (v === null ? null : new Date(v));
const round = (v: number): number => Math.round(v * 1000) / 1000;

interface RuleRow {
  id: string;
  user_id: string;
  name: string;
  subject_kind: SubjectKind;
  device_id: string | null;
  meter_id: string | null;
  device_kind: string | null;
  metric: string;
  operator: Operator;
  threshold: number;
  unit: string;
  duration_s: number;
  cooldown_s: number;
  severity: Severity;
  is_active: boolean;
}

function toRule(r: RuleRow): AlertRule {
  return {
    id: Number(r.id),
    user_id: Number(r.user_id),
    name: r.name,
    subject_kind: r.subject_kind,
    device_id: r.device_id === null ? null : Number(r.device_id),
    meter_id: r.meter_id === null ? null : Number(r.meter_id),
    device_kind: r.device_kind,
    metric: r.metric,
    operator: r.operator,
    threshold: r.threshold,
    unit: r.unit,
    duration_s: r.duration_s,
    cooldown_s: r.cooldown_s,
    severity: r.severity,
    is_active: r.is_active,
  };
}

interface AlertRow {
  id: string;
  rule_id: string;
  user_id: string;
  subject_kind: SubjectKind;
  subject_id: string;
  status: Alert['status'];
  severity: Severity;
  value: number | null;
  message: string;
  started_at: Date;
  fired_at: Date;
  acknowledged_at: Date | null;
  acknowledged_by: string | null;
  resolved_at: Date | null;
  resolved_by: string | null;
}

function toAlert(r: AlertRow): Alert {
  return {
    id: Number(r.id),
    rule_id: Number(r.rule_id),
    user_id: Number(r.user_id),
    subject_kind: r.subject_kind,
    subject_id: Number(r.subject_id),
    status: r.status,
    severity: r.severity,
    value: r.value,
    message: r.message,
    started_at: r.started_at,
    fired_at: r.fired_at,
    acknowledged_at: r.acknowledged_at,
    acknowledged_by: r.acknowledged_by === null ? null : Number(r.acknowledged_by),
    resolved_at: r.resolved_at,
    resolved_by: r.resolved_by === null ? null : Number(r.resolved_by),
  };
}
