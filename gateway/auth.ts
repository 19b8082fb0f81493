// API keys and signatures. A key belongs to a user and is HMAC_SHA256 or ED25519.
//
// HMAC_SHA256: the operator creates the key; the secret (32 random bytes, base64url) is shown once.
//   Client and server sign with K = SHA-256(secret) (the client derives K from the secret); the
//   server stores only K in api_keys.secret_hash. Trade-off: K is not the secret, but it is enough
//   to sign, so a database leak lets an attacker sign as the key's user until the key is revoked
//   (the server must be able to verify, so it cannot keep a one-way hash only). Prefer ED25519.
// ED25519: only the public key is stored (api_keys.public_key, raw 32 bytes). The operator either
//   uploads the client's public key or lets the server generate a pair and show the private key once.
//   A database leak reveals nothing that can sign.
//
// What is signed (UTF-8, '\n' between fields):
//   WebSocket login:  "kwx-login\n{key_id}\n{ts}\n{nonce}"
//   Admin request:    "kwx-admin\n{METHOD}\n{path with query}\n{ts}\n{nonce}\n{hex SHA-256 of the body}"
// ts = client time in ms since the epoch, accepted within ±auth_max_skew_ms; a nonce is accepted
// once per key within twice that window (replays are refused, shared across gateways over Redis).
import { createHash, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import type { Sql } from '../schema/db.js';
import type { Bus } from './bus.js';
import { fail, type Failure } from './codes.js';
import { NONCE_TTL_FACTOR } from './limits.js';

export type Role = 'PROSUMER' | 'CONSUMER' | 'GRID_OPERATOR' | 'ADMIN';
export type Algorithm = 'HMAC_SHA256' | 'ED25519';
export const OPERATOR_ROLES: ReadonlySet<Role> = new Set(['GRID_OPERATOR', 'ADMIN']);
export const TRADER_ROLES: ReadonlySet<Role> = new Set(['PROSUMER', 'CONSUMER']);

export interface Principal {
  user_id: number;
  role: Role;
  key_id: string;
}

interface KeyRow {
  id: string;
  user_id: string;
  algorithm: Algorithm;
  secret_hash: Buffer | null;
  public_key: Buffer | null;
  role: Role;
  is_active: boolean;
  revoked_at: Date | null;
}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function ed25519PublicKeyFromRaw(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

export function hmacKeyFromSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export function loginPayload(key_id: string, ts: number, nonce: string): string {
  return `kwx-login\n${key_id}\n${ts}\n${nonce}`;
}

export function adminPayload(method: string, path: string, ts: number, nonce: string, body: string | Buffer): string {
  return `kwx-admin\n${method.toUpperCase()}\n${path}\n${ts}\n${nonce}\n${createHash('sha256').update(body).digest('hex')}`;
}

/** What a client holds to sign: the HMAC secret or the Ed25519 private key (PKCS#8 DER, base64). */
export interface ClientCredentials {
  key_id: string;
  algorithm: Algorithm;
  secret: string;
}

export function signPayload(creds: ClientCredentials, payload: string): string {
  if (creds.algorithm === 'HMAC_SHA256') return createHmac('sha256', hmacKeyFromSecret(creds.secret)).update(payload).digest('base64');
  const key = createPrivateKey({ key: Buffer.from(creds.secret, 'base64'), format: 'der', type: 'pkcs8' });
  return sign(null, Buffer.from(payload), key).toString('base64');
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

/** A signed login message for a client (tests, bench). */
export function loginMessage(creds: ClientCredentials, now_ms = Date.now(), extra: Record<string, unknown> = {}): Record<string, unknown> {
  const nonce = newNonce();
  return { type: 'login', key_id: creds.key_id, ts: now_ms, nonce, sig: signPayload(creds, loginPayload(creds.key_id, now_ms, nonce)), ...extra };
}

/** Signed admin headers for a client. */
export function adminHeaders(creds: ClientCredentials, method: string, path: string, body = '', now_ms = Date.now()): Record<string, string> {
  const nonce = newNonce();
  return {
    'x-kwx-key': creds.key_id,
    'x-kwx-ts': String(now_ms),
    'x-kwx-nonce': nonce,
    'x-kwx-signature': signPayload(creds, adminPayload(method, path, now_ms, nonce, body)),
  };
}

export type NewApiKey = { key_id: string; algorithm: Algorithm; secret?: string; private_key?: string; public_key?: string };

/**
 * A new key's material: the row to store (only the HMAC key K = SHA-256(secret) or the Ed25519
 * public key) and the answer shown once (secret or private key). Nothing is written.
 */
export function newApiKeyMaterial(r: { user_id: number; algorithm: Algorithm; label?: string; public_key_b64?: string }): {
  row: { id: string; user_id: number; algorithm: Algorithm; secret_hash: Buffer | null; public_key: Buffer | null; label: string };
  answer: NewApiKey;
} {
  const key_id = `k_${randomBytes(12).toString('base64url')}`;
  const label = r.label ?? '';
  if (r.algorithm === 'HMAC_SHA256') {
    const secret = randomBytes(32).toString('base64url');
    return { row: { id: key_id, user_id: r.user_id, algorithm: 'HMAC_SHA256', secret_hash: hmacKeyFromSecret(secret), public_key: null, label }, answer: { key_id, algorithm: r.algorithm, secret } };
  }
  let raw: Buffer;
  let private_key: string | undefined;
  if (r.public_key_b64 !== undefined) {
    raw = Buffer.from(r.public_key_b64, 'base64');
    if (raw.length !== 32) throw Object.assign(new Error('public_key must be a raw 32-byte Ed25519 key in base64'), { code: 'INVALID_FIELD' });
  } else {
    const pair = generateKeyPairSync('ed25519');
    raw = pair.publicKey.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI_PREFIX.length);
    private_key = pair.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
  }
  return { row: { id: key_id, user_id: r.user_id, algorithm: 'ED25519', secret_hash: null, public_key: raw, label }, answer: { key_id, algorithm: r.algorithm, private_key, public_key: raw.toString('base64') } };
}

/** Creates a key for a user; the secret (HMAC) or private key (Ed25519, if no public key given) is returned once. */
export async function createApiKey(sql: Sql, r: { user_id: number; algorithm: Algorithm; label?: string; public_key_b64?: string }): Promise<NewApiKey> {
  const { row, answer } = newApiKeyMaterial(r);
  await sql`insert into api_keys (id, user_id, algorithm, secret_hash, public_key, label) values (${row.id}, ${row.user_id}, ${row.algorithm}, ${row.secret_hash}, ${row.public_key}, ${row.label})`;
  return answer;
}

function verifySignature(row: KeyRow, payload: string, sig_b64: string): boolean {
  const sig = Buffer.from(sig_b64, 'base64');
  if (row.algorithm === 'HMAC_SHA256') {
    if (row.secret_hash === null) return false;
    const want = createHmac('sha256', row.secret_hash).update(payload).digest();
    return sig.length === want.length && timingSafeEqual(sig, want);
  }
  if (row.public_key === null || sig.length !== 64) return false;
  try {
    return verify(null, Buffer.from(payload), ed25519PublicKeyFromRaw(row.public_key), sig);
  } catch {
    return false;
  }
}

/**
 * Checks a signed request: key known, not revoked, user active, timestamp fresh, signature right,
 * nonce unused. Every failure is UNAUTHORIZED with a reason (never which part of a key exists).
 */
export async function authenticate(
  sql: Sql,
  bus: Bus,
  r: { key_id: string; ts: number; nonce: string; sig: string; payload: string },
  now_ms: number,
  max_skew_ms: number,
): Promise<Principal | Failure> {
  if (!Number.isSafeInteger(r.ts) || Math.abs(now_ms - r.ts) > max_skew_ms) {
    return fail('UNAUTHORIZED', `timestamp is more than ${max_skew_ms} ms away from server time ${now_ms}`);
  }
  const rows = await sql<KeyRow[]>`
    select k.id, k.user_id, k.algorithm, k.secret_hash, k.public_key, k.revoked_at, u.role, u.is_active
    from api_keys k join users u on u.id = k.user_id where k.id = ${r.key_id}`;
  const row = rows[0];
  if (row === undefined || row.revoked_at !== null || !row.is_active || !verifySignature(row, r.payload, r.sig)) {
    return fail('UNAUTHORIZED', 'bad signature, or unknown or revoked key');
  }
  if (!(await bus.claimNonce(`${r.key_id}:${r.nonce}`, max_skew_ms * NONCE_TTL_FACTOR, now_ms))) {
    return fail('UNAUTHORIZED', 'nonce already used (replay)');
  }
  void sql`update api_keys set last_used_at = now() where id = ${r.key_id}`.catch(() => {});
  return { user_id: Number(row.user_id), role: row.role, key_id: row.id };
}
