// Per-meter and per-device tokens. A token is `kwx_m_<meter id>_<secret>` or
// `kwx_d_<device id>_<secret>`: the id finds the row by primary key, and only the SHA-256 of the
// whole token is stored (smart_meters.token_hash / devices.token_hash). The token is shown once.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Sql } from '../schema/db.js';

export type Principal = { kind: 'meter'; id: number } | { kind: 'device'; id: number };

const TOKEN_RE = /^kwx_([md])_(\d{1,18})_([A-Za-z0-9_-]{43})$/;

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** The principal a well-formed token claims (not yet verified), or null. */
export function parseToken(token: string): Principal | null {
  const m = TOKEN_RE.exec(token);
  if (m === null) return null;
  const id = Number(m[2]);
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return { kind: m[1] === 'm' ? 'meter' : 'device', id };
}

export function newToken(kind: Principal['kind'], id: number): { token: string; hash: Buffer } {
  const token = `kwx_${kind === 'meter' ? 'm' : 'd'}_${id}_${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashToken(token) };
}

/** Issues (or replaces) a meter's token; returns the secret, which is not stored. */
export async function issueMeterToken(sql: Sql, meterId: number): Promise<string> {
  const { token, hash } = newToken('meter', meterId);
  const rows = await sql`update smart_meters set token_hash = ${hash} where id = ${meterId} returning id`;
  if (rows.length !== 1) throw new Error(`meter ${meterId} does not exist`);
  return token;
}

/** Issues (or replaces) a device's token; returns the secret, which is not stored. */
export async function issueDeviceToken(sql: Sql, deviceId: number): Promise<string> {
  const { token, hash } = newToken('device', deviceId);
  const rows = await sql`update devices set token_hash = ${hash} where id = ${deviceId} returning id`;
  if (rows.length !== 1) throw new Error(`device ${deviceId} does not exist`);
  return token;
}

/** Verifies a token against the stored hash; null when it is malformed, unknown or revoked. */
export async function verifyToken(sql: Sql, token: string): Promise<Principal | null> {
  const p = parseToken(token);
  if (p === null) return null;
  const rows =
    p.kind === 'meter'
      ? await sql<{ token_hash: Buffer | null }[]>`select token_hash from smart_meters where id = ${p.id}`
      : await sql<{ token_hash: Buffer | null }[]>`select token_hash from devices where id = ${p.id}`;
  const stored = rows[0]?.token_hash;
  if (stored === undefined || stored === null || stored.length !== 32) return null;
  return timingSafeEqual(stored, hashToken(token)) ? p : null;
}
