import { availableParallelism } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/**
 * kwx configuration: one validated object read from environment variables.
 * Every field has a single-machine default; a wrong value stops start-up with a
 * ConfigError naming the variable and what it expects.
 */
export interface Config {
  /** PostgreSQL URL; null = start embedded PostgreSQL in `data_dir/pg`. */
  database_url: string | null;
  /** Redis URL; null = in-process fan-out. */
  redis_url: string | null;
  /** HTTP/WebSocket port of the gateway. */
  port: number;
  /** Interface the gateway binds. */
  host: string;
  /** Directory for embedded PostgreSQL and other local state; survives restarts. */
  data_dir: string;
  /** Port for embedded PostgreSQL (only used when database_url is null). */
  embedded_pg_port: number;
  log_level: LogLevel;
  /** Engine worker threads; default one per core. */
  engine_workers: number;
  /** Max rows in one journal batch and max wait before a partial batch is flushed. */
  journal_batch_max: number;
  journal_batch_wait_ms: number;
  /** Delivery intervals are written ahead so that every gate opening within this many hours exists (0: off). */
  intervals_ahead_hours: number;
  /** Seed a demo zone, users and keys on start (KWX_SEED_DEMO=1). */
  seed_demo: boolean;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly variable: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`${variable}: expected ${expected}, got ${JSON.stringify(got)}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function intVar(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = str(env, name);
  if (raw === undefined) return def;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `an integer from ${min} to ${max}`, raw);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(name, `an integer from ${min} to ${max}`, raw);
  return n;
}

function boolVar(env: Env, name: string, def: boolean): boolean {
  const raw = str(env, name);
  if (raw === undefined) return def;
  const v = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, 'one of 1, 0, true, false, yes, no, on, off', raw);
}

function urlVar(env: Env, name: string, protocols: readonly string[]): string | null {
  const raw = str(env, name);
  if (raw === undefined) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `a URL (${protocols.map((p) => `${p}//…`).join(' or ')})`, raw);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(name, `a URL with scheme ${protocols.join(' or ')}`, raw);
  }
  return raw;
}

/** Builds the config from `env` (process.env by default). Throws ConfigError on the first bad value. */
export function loadConfig(env: Env = process.env, cores = defaultCores()): Config {
  const level = (str(env, 'LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError('LOG_LEVEL', `one of ${LOG_LEVELS.join(', ')}`, level);
  }
  const dataDirRaw = str(env, 'KWX_DATA_DIR') ?? join(process.cwd(), '.kwx-data');
  if (dataDirRaw.includes('\0')) throw new ConfigError('KWX_DATA_DIR', 'a directory path', dataDirRaw);
  return {
    database_url: urlVar(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    redis_url: urlVar(env, 'REDIS_URL', ['redis:', 'rediss:']),
    port: intVar(env, 'PORT', 8080, 0, 65535),
    host: str(env, 'HOST') ?? '0.0.0.0',
    data_dir: isAbsolute(dataDirRaw) ? dataDirRaw : resolve(dataDirRaw),
    embedded_pg_port: intVar(env, 'KWX_EMBEDDED_PG_PORT', 54329, 1, 65535),
    log_level: level as LogLevel,
    engine_workers: intVar(env, 'KWX_ENGINE_WORKERS', cores, 1, 64),
    journal_batch_max: intVar(env, 'KWX_JOURNAL_BATCH_MAX', 4096, 1, 100_000),
    journal_batch_wait_ms: intVar(env, 'KWX_JOURNAL_BATCH_WAIT_MS', 2, 0, 1000),
    intervals_ahead_hours: intVar(env, 'KWX_INTERVALS_AHEAD_HOURS', 24, 0, 24 * 31),
    seed_demo: boolVar(env, 'KWX_SEED_DEMO', false),
  };
}

function defaultCores(): number {
  return Math.max(1, Math.min(64, availableParallelism()));
}
