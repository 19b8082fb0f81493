// Admin HTTP API (/admin/...): GRID_OPERATOR and ADMIN only, signed headers (see auth.ts), every
// action written to audit_log with who (user + key), what (action, entity, before/after), when
// and from where (IP). Bodies are JSON; answers are JSON; errors are { code, message }.
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type postgres from 'postgres';
import type { Sql } from '../schema/db.js';
import { invalidateIngestToken } from '../ingest/index.js';
import { newToken } from '../ingest/tokens.js';
import { isConnectionError } from '../ledger/store.js';
import { adminPayload, authenticate, newApiKeyMaterial, OPERATOR_ROLES, type Algorithm, type Principal } from './auth.js';
import type { Funds, TradingBackend } from './backend.js';
import type { Bus } from './bus.js';
import { fail, type Failure } from './codes.js';
import type { GatewayMetrics } from './gateway-metrics.js';
import type { GatewayLimits } from './limits.js';
import type { OrderTracker } from './publisher.js';
import { compile, type JsonSchema } from './validate.js';
import type { ZoneCatalog } from './zones.js';
import { Decimal } from 'decimal.js';

export interface AdminDeps {
  app: TemplatedApp;
  sql: Sql;
  bus: Bus;
  catalog: ZoneCatalog;
  limits: GatewayLimits;
  metrics: GatewayMetrics;
  backend: TradingBackend | null;
  funds: Funds;
  orders: OrderTracker | null;
  now: () => number;
  /** A zone was created: make it tradable here (engine, ledger); true when the engine runs it. */
  zoneCreated?: (zone_id: number) => Promise<boolean>;
}

type Fragment = postgres.Fragment;
/**
 * Every admin write is ONE statement: the change and its audit row are data-modifying CTEs of the
 * same statement, so they commit together or not at all — and no sql.begin(). postgres.js 3.4.9
 * sends its own ROLLBACK when a transaction's connection drops, and that write on the dead socket
 * throws from a timer (porsager/postgres#1208), which would take the whole process down. A single
 * statement on a pooled connection sends nothing after a failure: the request answers 503
 * EXCHANGE_UNAVAILABLE, and the audit log says whether the change was made (it is atomic with it).
 */
interface Ctx {
  principal: Principal;
  params: string[];
  query: URLSearchParams;
  body: Record<string, unknown>;
  ip: string;
  /** `insert into audit_log … select … from <from>`: a CTE body for the statement that makes the change. */
  auditFrom(from: Fragment, action: string, entity_type: string, entity_id: Fragment, before: Fragment, after: Fragment): Fragment;
  /** A standalone audit row (for changes that are not PostgreSQL writes: the ledger, the engine). */
  audit(action: string, entity_type: string, entity_id: string | number | null, before: unknown, after: unknown): Promise<void>;
}
interface Answer {
  status: number;
  body: unknown;
}
type Handler = (c: Ctx) => Promise<Answer>;

class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly failure: Failure,
  ) {
    super(failure.message);
  }
}
/** How far in the past a fee schedule's effective_from may be (clock skew between operator and server). */
const FEE_PAST_TOLERANCE_MS = 60_000;

const bad = (code: string, message: string, status = 400): never => {
  throw new AdminError(status, fail(code, message));
};

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  409: '409 Conflict', 413: '413 Payload Too Large', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
};

const obj = (props: Record<string, JsonSchema>, required: string[] = []): JsonSchema => ({ type: 'object', additionalProperties: false, properties: props, required });
const DEC: JsonSchema = { type: 'string', pattern: '^-?(0|[1-9][0-9]{0,17})(\\.[0-9]{1,18})?$' };
const INT: JsonSchema = { type: 'integer' };
const POS: JsonSchema = { type: 'integer', minimum: 1 };
const POLICY: JsonSchema = { enum: ['CANCEL_RESTING', 'KEEP_RESTING'] };
const ROLE: JsonSchema = { enum: ['PROSUMER', 'CONSUMER', 'GRID_OPERATOR', 'ADMIN'] };
const ZONE_FIELDS: Record<string, JsonSchema> = {
  name: { type: 'string', minLength: 1, maxLength: 200 },
  capacity_w: POS,
  price_band_min_ticks: INT,
  price_band_max_ticks: INT,
  min_order_wh: POS,
  max_order_wh: POS,
  lot_wh: POS,
  max_open_orders_per_user: POS,
  gate_open_lead_minutes: POS,
  gate_close_lead_minutes: { type: 'integer', minimum: 0 },
  interval_minutes: { enum: [5, 15, 30, 60] },
};

function readBody(res: HttpResponse, max: number, isAborted: () => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((ab, isLast) => {
      if (isAborted()) return;
      size += ab.byteLength;
      if (size > max) {
        reject(new AdminError(413, fail('INVALID_FIELD', `body larger than ${max} bytes`, max)));
        return;
      }
      chunks.push(Buffer.from(ab.slice(0)));
      if (isLast) resolve(Buffer.concat(chunks));
    });
  });
}

export function attachAdmin(d: AdminDeps): void {
  const { sql, limits, metrics } = d;

  const route = (method: 'get' | 'post' | 'put' | 'patch' | 'del', pattern: string, opts: { adminOnly?: boolean; schema?: JsonSchema }, h: Handler): void => {
    const validate = opts.schema ? compile(opts.schema) : null;
    const nParams = (pattern.match(/:/g) ?? []).length;
    const label = `${method.toUpperCase()} ${pattern}`;
    d.app[method](pattern, (res: HttpResponse, req: HttpRequest) => {
      const t0 = performance.now();
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      const url = req.getUrl();
      const q = req.getQuery() ?? '';
      const pathWithQuery = q === '' ? url : `${url}?${q}`;
      const headers = { key: req.getHeader('x-kwx-key'), ts: req.getHeader('x-kwx-ts'), nonce: req.getHeader('x-kwx-nonce'), sig: req.getHeader('x-kwx-signature'), fwd: req.getHeader('x-forwarded-for') };
      const params = Array.from({ length: nParams }, (_, i) => req.getParameter(i) ?? '');
      const ip = headers.fwd !== '' ? headers.fwd.split(',')[0].trim() : Buffer.from(res.getRemoteAddressAsText()).toString();
      const reply = (a: Answer): void => {
        metrics.admin_requests.inc({ route: label, status: String(a.status) });
        metrics.admin_seconds.observe({ route: label }, (performance.now() - t0) / 1e3);
        if (aborted) return;
        res.cork(() => {
          res.writeStatus(STATUS_TEXT[a.status] ?? `${a.status} Status`).writeHeader('content-type', 'application/json').end(JSON.stringify(a.body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
        });
      };
      const body = method === 'get' || method === 'del' ? Promise.resolve(Buffer.alloc(0)) : readBody(res, limits.max_admin_body_bytes, () => aborted);
      (async (): Promise<Answer> => {
        const raw = await body;
        if (headers.key === '' || headers.sig === '') bad('UNAUTHORIZED', 'sign the request: x-kwx-key, x-kwx-ts, x-kwx-nonce, x-kwx-signature', 401);
        const ts = Number(headers.ts);
        const auth = await authenticate(sql, d.bus, { key_id: headers.key, ts, nonce: headers.nonce, sig: headers.sig, payload: adminPayload(method === 'del' ? 'DELETE' : method, pathWithQuery, ts, headers.nonce, raw) }, d.now(), limits.auth_max_skew_ms);
        if ('code' in auth) bad(auth.code, auth.message, 401);
        const principal = auth as Principal;
        if (!OPERATOR_ROLES.has(principal.role)) bad('FORBIDDEN', `role ${principal.role} may not use the admin API`, 403);
        if (opts.adminOnly === true && principal.role !== 'ADMIN') bad('FORBIDDEN', 'this action needs the ADMIN role', 403);
        let parsed: Record<string, unknown> = {};
        if (raw.length > 0) {
          try {
            parsed = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
          } catch {
            bad('MALFORMED', 'the body is not valid JSON');
          }
        }
        if (validate !== null) {
          const p = validate(parsed);
          if (p !== null) bad('INVALID_FIELD', p.message);
        }
        return h({
          principal,
          params,
          query: new URLSearchParams(q),
          body: parsed,
          ip,
          auditFrom(from, action, entity_type, entity_id, before, after) {
            return sql`insert into audit_log (actor_user_id, actor_key_id, action, entity_type, entity_id, before, after, ip)
              select ${principal.user_id}::bigint, ${principal.key_id}::text, ${action}::text, ${entity_type}::text, (${entity_id})::text,
                     ${before}, ${after}, ${ip === '' ? null : ip}::inet
              from ${from}`;
          },
          async audit(action, entity_type, entity_id, before, after) {
            await sql`insert into audit_log (actor_user_id, actor_key_id, action, entity_type, entity_id, before, after, ip)
              values (${principal.user_id}, ${principal.key_id}, ${action}, ${entity_type}, ${entity_id === null ? null : String(entity_id)},
                      ${before === null ? null : sql.json(before as never)}, ${after === null ? null : sql.json(after as never)}, ${ip === '' ? null : ip})`;
          },
        });
      })().then(reply, (err: unknown) => {
        if (err instanceof AdminError) return reply({ status: err.status, body: err.failure });
        const e = err as { code?: string; message?: string };
        if (isConnectionError(err)) {
          return reply({
            status: 503,
            body: fail('EXCHANGE_UNAVAILABLE', `the database connection was lost during the request (${e.message ?? String(err)}); a change it made is in the audit log together with its audit row, or not at all — check GET /admin/audit before retrying`),
          });
        }
        if (e.code === '23505') return reply({ status: 409, body: fail('CONFLICT', e.message ?? 'already exists') });
        if (e.code === '23503' || e.code === '23514' || e.code === '22P02') return reply({ status: 400, body: fail('INVALID_FIELD', e.message ?? 'invalid value') });
        reply({ status: 500, body: fail('INTERNAL', e.message ?? String(err)) });
      });
    });
  };

  const id = (s: string): number => {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n <= 0) bad('INVALID_FIELD', `"${s}" is not an id`);
    return n;
  };
  const one = async <T>(rows: Promise<T[]> | T[], what: string): Promise<T> => {
    const r = (await rows)[0];
    if (r === undefined) bad('NOT_FOUND', `${what} not found`, 404);
    return r as T;
  };
  /** Splits `select 0 as k, before.* … union all select 1 as k, after.*` rows into before and after. */
  const beforeAfter = (rows: Record<string, unknown>[], what: string): { before: Record<string, unknown>; after: Record<string, unknown> } => {
    const pick = (k: number) => {
      const r = rows.find((x) => Number(x.k) === k);
      if (r === undefined) bad('NOT_FOUND', `${what} not found`, 404);
      const { k: _k, ...rest } = r!;
      return rest;
    };
    return { before: pick(0), after: pick(1) };
  };
  const nextId = async (table: 'smart_meters' | 'devices'): Promise<number> => {
    const [r] = await sql<{ id: string }[]>`select nextval(pg_get_serial_sequence(${table}, 'id'))::text as id`;
    return Number(r.id);
  };
  const json = (v: unknown): Fragment => sql`${sql.json(v as never)}::jsonb`;
  const NULL = sql`null::jsonb`;
  const page = (c: Ctx): { limit: number; after: number } => {
    const limit = Math.min(limits.max_page_size, Math.max(1, Number(c.query.get('limit') ?? 100) || 100));
    const after = Number(c.query.get('after') ?? 0) || 0;
    return { limit, after };
  };
  const engineCommand = async (zone_id: number, cmd: Parameters<TradingBackend['submit']>[1]): Promise<unknown> => {
    if (d.backend === null || !d.backend.zones().includes(zone_id)) return { applied: false, note: 'the engine does not run this zone here' };
    const r = await d.backend.submit(zone_id, cmd);
    if (!r.ok) bad(r.code, r.message, 503);
    const rej = r.ok ? r.events.find((e) => e.type === 'REJECTED') : undefined;
    if (rej !== undefined && rej.type === 'REJECTED') bad(rej.reason, `engine rejected ${cmd.type}: ${rej.reason}`, 409);
    return { applied: true, seq: r.ok ? r.seq : 0, cancelled: r.ok ? r.events.filter((e) => e.type === 'CANCELLED').length : 0 };
  };

  // ---- zones ------------------------------------------------------------------------------
  route('post', '/admin/zones', {
    schema: obj({ code: { type: 'string', pattern: '^[A-Z0-9][A-Z0-9_-]{1,31}$' }, currency: { type: 'string', pattern: '^[A-Z]{3}$' }, currency_minor_units: { type: 'integer', minimum: 0, maximum: 8 }, tick_size: DEC, ...ZONE_FIELDS }, ['code', 'name', 'currency', 'tick_size', 'capacity_w', 'price_band_min_ticks', 'price_band_max_ticks', 'max_order_wh']),
  }, async (c) => {
    const b = c.body;
    const [row] = await sql`with after as (insert into grid_zones ${sql(b as Record<string, never>)} returning *),
      audit as (${c.auditFrom(sql`after`, 'zone.create', 'grid_zone', sql`after.id`, NULL, sql`to_jsonb(after)`)})
      select * from after`;
    await d.catalog.refresh();
    // Trading starts without a restart: the engine runs the zone (configured from this row as its
    // first journal row) and the ledger knows its currency and fees; the runtime's calendar writes
    // its delivery intervals. The zone row stands either way (it is committed and audited).
    let engine: { running: boolean; note?: string };
    try {
      const running = d.zoneCreated === undefined ? false : await d.zoneCreated(Number(row.id));
      engine = running ? { running: true } : { running: false, note: 'the engine does not run this zone in this process' };
    } catch (err) {
      engine = { running: false, note: `the engine could not start the zone: ${(err as Error).message}; it starts at the next restart` };
    }
    return { status: 201, body: { ...row, engine } };
  });

  route('patch', '/admin/zones/:id', { schema: obj({ ...ZONE_FIELDS, tick_size: DEC }) }, async (c) => {
    const zone_id = id(c.params[0]);
    if (Object.keys(c.body).length === 0) bad('INVALID_FIELD', 'nothing to change');
    const { before, after } = beforeAfter(await sql`with before as (select * from grid_zones where id = ${zone_id} for update),
      after as (update grid_zones set ${sql(c.body as Record<string, never>)}, updated_at = now() where id = ${zone_id} returning *),
      audit as (${c.auditFrom(sql`before, after`, 'zone.update', 'grid_zone', sql`after.id`, sql`to_jsonb(before)`, sql`to_jsonb(after)`)})
      select 0 as k, before.* from before union all select 1 as k, after.* from after`, `zone ${zone_id}`);
    await d.catalog.refresh();
    const engine = await engineCommand(zone_id, {
      type: 'CONFIGURE_ZONE', zone_id, price_step_ticks: 1, lot_wh: Number(after.lot_wh), band_min_ticks: Number(after.price_band_min_ticks), band_max_ticks: Number(after.price_band_max_ticks),
      min_qty_wh: Number(after.min_order_wh), max_qty_wh: Number(after.max_order_wh), max_open_orders_per_user: Number(after.max_open_orders_per_user),
    });
    return { status: 200, body: { before, after, engine } };
  });

  const statusChange = (verb: 'halt' | 'resume' | 'maintenance', status: string): void => {
    route('post', `/admin/zones/:id/${verb}`, { schema: obj({ policy: POLICY, reason: { type: 'string', maxLength: 500 } }) }, async (c) => {
      const zone_id = id(c.params[0]);
      const policy = (c.body.policy as 'CANCEL_RESTING' | 'KEEP_RESTING' | undefined) ?? 'KEEP_RESTING';
      const cmd = verb === 'halt' ? ({ type: 'HALT', policy } as const) : verb === 'resume' ? ({ type: 'RESUME' } as const) : ({ type: 'MAINTENANCE', policy } as const);
      await one(sql`select id from grid_zones where id = ${zone_id}`, `zone ${zone_id}`);
      const engine = await engineCommand(zone_id, cmd);
      const { after } = beforeAfter(await sql`with before as (select id, status from grid_zones where id = ${zone_id} for update),
        after as (update grid_zones set status = ${status}, updated_at = now() where id = ${zone_id} returning id, status),
        audit as (${c.auditFrom(sql`before, after`, `zone.${verb}`, 'grid_zone', sql`after.id`, sql`to_jsonb(before)`, sql`to_jsonb(after) || ${json({ policy, reason: c.body.reason ?? null, engine })}`)})
        select 0 as k, before.* from before union all select 1 as k, after.* from after`, `zone ${zone_id}`);
      await d.catalog.refresh();
      return { status: 200, body: { ...after, policy, engine } };
    });
  };
  statusChange('halt', 'HALTED');
  statusChange('resume', 'ACTIVE');
  statusChange('maintenance', 'MAINTENANCE');

  route('put', '/admin/zones/:id/compliance/:rule', { schema: obj({ parameters: { type: 'object' }, is_active: { type: 'boolean' } }, ['parameters']) }, async (c) => {
    const zone_id = id(c.params[0]);
    const rule = c.params[1];
    const [body] = await sql`with before as (select * from compliance_rules where zone_id = ${zone_id} and rule = ${rule} for update),
      after as (insert into compliance_rules (zone_id, rule, parameters, is_active, created_by)
        values (${zone_id}, ${rule}, ${sql.json(c.body.parameters as never)}, ${c.body.is_active !== false}, ${c.principal.user_id})
        on conflict (zone_id, rule) do update set parameters = excluded.parameters, is_active = excluded.is_active, updated_at = now() returning *),
      audit as (${c.auditFrom(sql`after`, 'compliance.set', 'compliance_rule', sql`${`${zone_id}:${rule}`}::text`, sql`(select to_jsonb(before) from before)`, sql`to_jsonb(after)`)})
      select * from after`;
    return { status: 200, body };
  });

  // ---- platform config and fees -------------------------------------------------------------
  route('put', '/admin/config/:key', { adminOnly: true, schema: obj({ value: {} }, ['value']) }, async (c) => {
    const key = c.params[0];
    const [body] = await sql`with before as (select * from platform_config where key = ${key} for update),
      after as (insert into platform_config (key, value, updated_by) values (${key}, ${sql.json(c.body.value as never)}, ${c.principal.user_id})
        on conflict (key) do update set value = excluded.value, updated_by = excluded.updated_by, updated_at = now() returning *),
      audit as (${c.auditFrom(sql`after`, 'config.set', 'platform_config', sql`after.key`, sql`(select to_jsonb(before) from before)`, sql`to_jsonb(after)`)})
      select * from after`;
    return { status: 200, body };
  });

  // A fee schedule applies from `effective_from` (default: now) until the next one of its zone (or
  // of the platform default, zone_id absent). It cannot start in the past: fees already charged stay.
  route('post', '/admin/fees', { adminOnly: true, schema: obj({ zone_id: POS, fee_bps: { type: 'integer', minimum: 0, maximum: 10000 }, fee_per_kwh_minor: { type: 'integer', minimum: 0 }, effective_from: { type: 'string', maxLength: 40 } }, ['fee_bps']) }, async (c) => {
    const from = c.body.effective_from as string | undefined;
    let from_ms: number | null = null;
    if (from !== undefined) {
      from_ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(from) ? Date.parse(from) : NaN;
      if (!Number.isFinite(from_ms)) bad('INVALID_FIELD', `effective_from "${from}" is not an ISO 8601 time with a zone (e.g. 2030-01-01T00:00:00Z)`);
      if ((from_ms as number) < d.now() - FEE_PAST_TOLERANCE_MS) bad('INVALID_FIELD', `effective_from ${from} is in the past: a fee schedule applies from now on`);
    }
    const [body] = await sql`with after as (insert into fee_schedules (zone_id, fee_bps, fee_per_kwh_minor, effective_from, created_by)
        values (${(c.body.zone_id as number | undefined) ?? null}, ${c.body.fee_bps as number}, ${(c.body.fee_per_kwh_minor as number | undefined) ?? 0},
          ${from_ms === null ? sql`now()` : sql`timestamptz 'epoch' + ${from_ms}::bigint * interval '1 millisecond'`}, ${c.principal.user_id}) returning *),
      audit as (${c.auditFrom(sql`after`, 'fees.set', 'fee_schedule', sql`after.id`, NULL, sql`to_jsonb(after)`)})
      select *, (extract(epoch from effective_from) * 1000)::bigint as effective_from_ms from after`;
    // The ledger charges it from then on, without a restart.
    d.funds.setFeeSchedule({
      zone_id: body.zone_id === null ? null : Number(body.zone_id),
      effective_from_ms: Number(body.effective_from_ms),
      fee_bps: Number(body.fee_bps),
      fee_per_kwh_minor: BigInt(body.fee_per_kwh_minor as string),
    });
    delete body.effective_from_ms;
    return { status: 201, body };
  });

  // ---- users and keys ---------------------------------------------------------------------
  route('post', '/admin/users', { adminOnly: true, schema: obj({ email: { type: 'string', maxLength: 254 }, name: { type: 'string', minLength: 1, maxLength: 200 }, role: ROLE, home_zone_id: POS }, ['email', 'name', 'role']) }, async (c) => {
    const [body] = await sql`with after as (insert into users ${sql(c.body as Record<string, never>)} returning *),
      audit as (${c.auditFrom(sql`after`, 'user.create', 'user', sql`after.id`, NULL, sql`to_jsonb(after)`)})
      select * from after`;
    return { status: 201, body };
  });

  route('patch', '/admin/users/:id', { adminOnly: true, schema: obj({ name: { type: 'string', minLength: 1, maxLength: 200 }, role: ROLE, is_active: { type: 'boolean' } }) }, async (c) => {
    const user_id = id(c.params[0]);
    if (Object.keys(c.body).length === 0) bad('INVALID_FIELD', 'nothing to change');
    const body = beforeAfter(await sql`with before as (select * from users where id = ${user_id} for update),
      after as (update users set ${sql(c.body as Record<string, never>)}, updated_at = now() where id = ${user_id} returning *),
      audit as (${c.auditFrom(sql`before, after`, 'user.update', 'user', sql`after.id`, sql`to_jsonb(before)`, sql`to_jsonb(after)`)})
      select 0 as k, before.* from before union all select 1 as k, after.* from after`, `user ${user_id}`);
    return { status: 200, body };
  });

  route('post', '/admin/users/:id/keys', { schema: obj({ algorithm: { enum: ['HMAC_SHA256', 'ED25519'] }, label: { type: 'string', maxLength: 200 }, public_key: { type: 'string', maxLength: 100 } }, ['algorithm']) }, async (c) => {
    const user_id = id(c.params[0]);
    const user = await one(sql<{ role: string }[]>`select role from users where id = ${user_id}`, `user ${user_id}`);
    if (OPERATOR_ROLES.has(user.role as never) && c.principal.role !== 'ADMIN') bad('FORBIDDEN', 'only an ADMIN creates keys for operators', 403);
    let key: ReturnType<typeof newApiKeyMaterial>;
    try {
      key = newApiKeyMaterial({ user_id, algorithm: c.body.algorithm as Algorithm, label: c.body.label as string | undefined, public_key_b64: c.body.public_key as string | undefined });
    } catch (err) {
      return bad('INVALID_FIELD', (err as Error).message);
    }
    const k = key.row;
    // The secret is never written to the audit log.
    await sql`with created as (insert into api_keys (id, user_id, algorithm, secret_hash, public_key, label)
        values (${k.id}, ${k.user_id}, ${k.algorithm}, ${k.secret_hash}, ${k.public_key}, ${k.label}) returning id),
      audit as (${c.auditFrom(sql`created`, 'key.create', 'api_key', sql`created.id`, NULL, json({ key_id: k.id, user_id, algorithm: k.algorithm, label: c.body.label ?? '' }))})
      select id from created`;
    return { status: 201, body: key.answer };
  });

  route('del', '/admin/keys/:id', {}, async (c) => {
    const key_id = c.params[0];
    const { after: body } = beforeAfter(await sql`with before as (select id, user_id, algorithm, label, revoked_at from api_keys where id = ${key_id} for update),
      after as (update api_keys set revoked_at = coalesce(revoked_at, now()) where id = ${key_id} returning id, user_id, algorithm, label, revoked_at),
      audit as (${c.auditFrom(sql`before, after`, 'key.revoke', 'api_key', sql`after.id`, sql`to_jsonb(before)`, sql`to_jsonb(after)`)})
      select 0 as k, before.* from before union all select 1 as k, after.* from after`, `key ${key_id}`);
    return { status: 200, body };
  });

  // ---- assets -----------------------------------------------------------------------------
  route('post', '/admin/energy-sources', { schema: obj({ user_id: POS, zone_id: POS, kind: { enum: ['SOLAR', 'WIND', 'BATTERY', 'HYDRO'] }, capacity_w: POS, installed_on: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' } }, ['user_id', 'zone_id', 'kind', 'capacity_w']) }, async (c) => {
    const [body] = await sql`with after as (insert into energy_sources ${sql(c.body as Record<string, never>)} returning *),
      audit as (${c.auditFrom(sql`after`, 'energy_source.register', 'energy_source', sql`after.id`, NULL, sql`to_jsonb(after)`)})
      select * from after`;
    return { status: 201, body };
  });

  // A meter or device gets its ingest token at registration (shown once, only its hash is kept;
  // the audit log records that a token was issued, never the token).
  route('post', '/admin/meters', { schema: obj({ serial: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{3,64}$' }, user_id: POS, zone_id: POS, max_power_w: POS, interval_minutes: { enum: [1, 5, 15, 30, 60] } }, ['serial', 'user_id', 'zone_id', 'max_power_w']) }, async (c) => {
    const b = c.body as { serial: string; user_id: number; zone_id: number; max_power_w: number; interval_minutes?: number };
    // The token names the meter's id: take the id first (a lost id is harmless), then one statement.
    const meter_id = await nextId('smart_meters');
    const { token, hash } = newToken('meter', meter_id);
    const [after] = await sql`with after as (insert into smart_meters (id, serial, user_id, zone_id, max_power_w, interval_minutes, token_hash) overriding system value
        values (${meter_id}, ${b.serial}, ${b.user_id}, ${b.zone_id}, ${b.max_power_w}, ${b.interval_minutes === undefined ? sql`default` : b.interval_minutes}, ${hash}) returning *),
      audit as (${c.auditFrom(sql`after`, 'meter.register', 'smart_meter', sql`after.id`, NULL, sql`(to_jsonb(after) - 'token_hash') || '{"token_issued": true}'::jsonb`)})
      select * from after`;
    const body = { ...after, token_hash: undefined, token };
    return { status: 201, body };
  });

  route('post', '/admin/devices', { schema: obj({ serial: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{3,64}$' }, user_id: POS, meter_id: POS, source_id: POS, kind: { enum: ['INVERTER', 'BATTERY', 'EV_CHARGER', 'HEAT_PUMP', 'WIND_TURBINE', 'HYDRO_TURBINE', 'GATEWAY', 'OTHER'] } }, ['serial', 'user_id', 'kind']) }, async (c) => {
    const b = c.body as { serial: string; user_id: number; meter_id?: number; source_id?: number; kind: string };
    const device_id = await nextId('devices');
    const { token, hash } = newToken('device', device_id);
    const [after] = await sql`with after as (insert into devices (id, serial, user_id, meter_id, source_id, kind, token_hash) overriding system value
        values (${device_id}, ${b.serial}, ${b.user_id}, ${b.meter_id ?? null}, ${b.source_id ?? null}, ${b.kind}, ${hash}) returning *),
      audit as (${c.auditFrom(sql`after`, 'device.register', 'device', sql`after.id`, NULL, sql`(to_jsonb(after) - 'token_hash') || '{"token_issued": true}'::jsonb`)})
      select * from after`;
    const body = { ...after, token_hash: undefined, token };
    return { status: 201, body };
  });

  for (const [kind, table] of [['meters', 'smart_meters'], ['devices', 'devices']] as const) {
    route('post', `/admin/${kind}/:id/token`, {}, async (c) => {
      const target = id(c.params[0]);
      const { token, hash } = newToken(kind === 'meters' ? 'meter' : 'device', target);
      const rows = await sql`with t as (update ${sql(table)} set token_hash = ${hash} where id = ${target} returning id),
        audit as (${c.auditFrom(sql`t`, `${kind.slice(0, -1)}.token_rotate`, table === 'devices' ? 'device' : 'smart_meter', sql`t.id`, NULL, json({ token_issued: true }))})
        select id from t`;
      if (rows.length === 0) bad('NOT_FOUND', `no ${kind.slice(0, -1)} ${target}`, 404);
      // The old token stops working here at once (other processes: within ingest's auth cache TTL).
      invalidateIngestToken(kind === 'meters' ? 'meter' : 'device', target);
      const body = { id: target, token };
      return { status: 200, body };
    });
  }

  // ---- money ------------------------------------------------------------------------------
  const money = (verb: 'deposits' | 'withdrawals'): void => {
    route('post', `/admin/${verb}`, { adminOnly: true, schema: obj({ transfer_id: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$' }, user_id: POS, currency: { type: 'string', pattern: '^[A-Z]{3}$' }, amount: DEC }, ['transfer_id', 'user_id', 'currency', 'amount']) }, async (c) => {
      const b = c.body as { transfer_id: string; user_id: number; currency: string; amount: string };
      const minor = new Decimal(b.amount).mul(new Decimal(10).pow(d.catalog.minorUnits(b.currency)));
      if (!minor.isInteger() || minor.lte(0)) bad('INVALID_FIELD', `amount ${b.amount} is not a positive whole number of minor units of ${b.currency}`);
      const req = { transfer_id: b.transfer_id, user_id: b.user_id, currency: b.currency, amount_minor: BigInt(minor.toFixed(0)) };
      const before = d.funds.balances(b.user_id).find((x) => x.currency === b.currency) ?? null;
      const f = verb === 'deposits' ? d.funds.deposit(req) : d.funds.withdraw(req);
      if (f !== null) bad(f.code, f.message, f.code === 'EXCHANGE_UNAVAILABLE' ? 503 : 409);
      const after = d.funds.balances(b.user_id).find((x) => x.currency === b.currency) ?? null;
      // The movement is durable in the ledger before it is reported.
      const durable = d.funds.durable();
      if (durable !== null) await durable;
      const show = (x: typeof after) => (x === null ? null : { available_minor: x.available_minor.toString(), held_minor: x.held_minor.toString(), escrow_minor: x.escrow_minor.toString() });
      await c.audit(verb === 'deposits' ? 'funds.deposit' : 'funds.withdraw', 'user', b.user_id, show(before), { ...show(after), transfer_id: b.transfer_id, amount: b.amount, currency: b.currency });
      return { status: 201, body: { transfer_id: b.transfer_id, balance: show(after) } };
    });
  };
  money('deposits');
  money('withdrawals');

  // ---- force cancel -----------------------------------------------------------------------
  route('post', '/admin/orders/:id/cancel', {}, async (c) => {
    const order_id = id(c.params[0]);
    const o = d.orders?.get(order_id);
    if (o === undefined || (o.status !== 'ACTIVE' && o.status !== 'PARTIALLY_FILLED')) bad('UNKNOWN_ORDER', `no open order ${order_id}`, 404);
    const before = { ...o! };
    const engine = await engineCommand(o!.zone_id, { type: 'CANCEL', order_id, user_id: o!.user_id });
    await c.audit('order.force_cancel', 'order', order_id, before, { status: o!.status, engine });
    return { status: 200, body: { order_id, status: o!.status, engine } };
  });

  // ---- queries ----------------------------------------------------------------------------
  route('get', '/admin/orders', {}, async (c) => {
    const { limit, after } = page(c);
    const zone = c.query.get('zone_id');
    const user = c.query.get('user_id');
    const status = c.query.get('status');
    const items = await sql`select * from orders where id > ${after}
      ${zone ? sql`and zone_id = ${Number(zone)}` : sql``} ${user ? sql`and user_id = ${Number(user)}` : sql``} ${status ? sql`and status = ${status}` : sql``}
      order by id limit ${limit}`;
    return { status: 200, body: { items, next_after: items.length === limit ? items[items.length - 1].id : null } };
  });
  route('get', '/admin/trades', {}, async (c) => {
    const { limit, after } = page(c);
    const zone = c.query.get('zone_id');
    const items = await sql`select * from trades where id > ${after} ${zone ? sql`and zone_id = ${Number(zone)}` : sql``} order by id limit ${limit}`;
    return { status: 200, body: { items, next_after: items.length === limit ? items[items.length - 1].id : null } };
  });
  route('get', '/admin/price-history', {}, async (c) => {
    const { limit } = page(c);
    const zone_id = id(c.query.get('zone_id') ?? '');
    const before = c.query.get('before');
    const items = await sql`select * from price_history where zone_id = ${zone_id} ${before ? sql`and bucket_start < ${before}` : sql``} order by bucket_start desc limit ${limit}`;
    return { status: 200, body: { items, next_before: items.length === limit ? items[items.length - 1].bucket_start : null } };
  });
  route('get', '/admin/audit', {}, async (c) => {
    const { limit } = page(c);
    const before = Number(c.query.get('before') ?? 0) || Number.MAX_SAFE_INTEGER;
    const entity = c.query.get('entity_type');
    const action = c.query.get('action');
    const items = await sql`select * from audit_log where id < ${before} ${entity ? sql`and entity_type = ${entity}` : sql``} ${action ? sql`and action = ${action}` : sql``}
      order by id desc limit ${limit}`;
    return { status: 200, body: { items, next_before: items.length === limit ? items[items.length - 1].id : null } };
  });
}

