// Meter and device contexts (registry rows + the meter's latest stored reading) and token
// verification, cached for a short TTL so that a batch costs no registry round trip. A status
// change (meter set INACTIVE, token replaced) takes effect within the TTL, or at once after
// invalidate() / invalidateToken() (see invalidateIngestToken in service.ts).
import type { Sql } from '../schema/db.js';
import { hashToken, verifyToken, type Principal } from './tokens.js';
import type { DeviceContext, EntityStatus, LatestReading, MeterContext } from './types.js';

/** Bound on each cache; it is cleared when full (a cheap, rare reset). */
const MAX_CACHE_ENTRIES = 200_000;

interface Entry<T> {
  value: T;
  expires_ms: number;
}

export class Registry {
  private readonly meters = new Map<number, Entry<MeterContext>>();
  private readonly devices = new Map<number, Entry<DeviceContext>>();
  private readonly tokens = new Map<string, Entry<Principal | null>>();

  constructor(
    private readonly sql: Sql,
    private readonly now: () => number,
    private readonly ttlMs: number,
    private readonly authTtlMs: number,
  ) {}

  async authenticate(token: string): Promise<Principal | null> {
    const key = hashToken(token).toString('base64');
    const hit = this.tokens.get(key);
    if (hit !== undefined && hit.expires_ms > this.now()) return hit.value;
    const p = await verifyToken(this.sql, token);
    put(this.tokens, key, { value: p, expires_ms: this.now() + this.authTtlMs });
    return p;
  }

  async meter(id: number): Promise<MeterContext | null> {
    const hit = this.meters.get(id);
    if (hit !== undefined && hit.expires_ms > this.now()) return hit.value;
    const rows = await this.sql<MeterRow[]>`
      select m.id::int8 as id, m.serial, m.user_id, m.zone_id, z.timezone, m.status, m.max_power_w, m.interval_minutes,
             m.registered_at, extract(epoch from l.interval_start)::int8 as latest_start_s, l.interval_minutes as latest_minutes,
             l.production_wh as latest_production_wh, l.consumption_wh as latest_consumption_wh
      from smart_meters m join grid_zones z on z.id = m.zone_id left join meter_latest l on l.meter_id = m.id
      where m.id = ${id}`;
    if (rows.length === 0) return null;
    const ctx = toMeterContext(rows[0]);
    put(this.meters, id, { value: ctx, expires_ms: this.now() + this.ttlMs });
    return ctx;
  }

  /** id and owner of the meter with this serial, or null. */
  async meterBySerial(serial: string): Promise<{ id: number; user_id: number } | null> {
    const rows = await this.sql<{ id: string; user_id: string }[]>`select id, user_id from smart_meters where serial = ${serial}`;
    return rows.length === 0 ? null : { id: Number(rows[0].id), user_id: Number(rows[0].user_id) };
  }

  async deviceBySerial(serial: string): Promise<{ id: number; user_id: number } | null> {
    const rows = await this.sql<{ id: string; user_id: string }[]>`select id, user_id from devices where serial = ${serial}`;
    return rows.length === 0 ? null : { id: Number(rows[0].id), user_id: Number(rows[0].user_id) };
  }

  async device(id: number): Promise<DeviceContext | null> {
    const hit = this.devices.get(id);
    if (hit !== undefined && hit.expires_ms > this.now()) return hit.value;
    const rows = await this.sql<{ id: string; serial: string; user_id: string; kind: string; status: EntityStatus; registered_at: Date }[]>`
      select id, serial, user_id, kind, status, registered_at from devices where id = ${id}`;
    if (rows.length === 0) return null;
    const r = rows[0];
    const ctx: DeviceContext = { id: Number(r.id), serial: r.serial, user_id: Number(r.user_id), kind: r.kind, status: r.status, registered_at_ms: r.registered_at.getTime() };
    put(this.devices, id, { value: ctx, expires_ms: this.now() + this.ttlMs });
    return ctx;
  }

  /** Records a newer latest reading after its batch committed (older ones are ignored). */
  advanceLatest(meterId: number, latest: LatestReading): void {
    const hit = this.meters.get(meterId);
    if (hit === undefined) return;
    const cur = hit.value.latest;
    if (cur === null || latest.start_s > cur.start_s) hit.value = { ...hit.value, latest };
  }

  invalidateMeter(id: number): void {
    this.meters.delete(id);
  }

  invalidateDevice(id: number): void {
    this.devices.delete(id);
  }

  /** Forgets every cached verification of this meter's/device's tokens (after a rotation or revocation). */
  invalidateToken(kind: Principal['kind'], id: number): void {
    for (const [k, e] of this.tokens) {
      if (e.value !== null && e.value.kind === kind && e.value.id === id) this.tokens.delete(k);
    }
    if (kind === 'meter') this.meters.delete(id);
    else this.devices.delete(id);
  }

  invalidateAll(): void {
    this.meters.clear();
    this.devices.clear();
    this.tokens.clear();
  }
}

interface MeterRow {
  id: string;
  serial: string;
  user_id: string;
  zone_id: string;
  timezone: string;
  status: EntityStatus;
  max_power_w: string;
  interval_minutes: number;
  registered_at: Date;
  latest_start_s: string | null;
  latest_minutes: number | null;
  latest_production_wh: string | null;
  latest_consumption_wh: string | null;
}

function toMeterContext(r: MeterRow): MeterContext {
  return {
    id: Number(r.id),
    serial: r.serial,
    user_id: Number(r.user_id),
    zone_id: Number(r.zone_id),
    timezone: r.timezone,
    status: r.status,
    max_power_w: Number(r.max_power_w),
    interval_minutes: r.interval_minutes,
    registered_at_ms: r.registered_at.getTime(),
    latest:
      r.latest_start_s === null
        ? null
        : {
            start_s: Number(r.latest_start_s),
            minutes: r.latest_minutes ?? 0,
            production_wh: Number(r.latest_production_wh),
            consumption_wh: Number(r.latest_consumption_wh),
          },
  };
}

function put<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (map.size >= MAX_CACHE_ENTRIES) map.clear();
  map.set(key, value);
}
