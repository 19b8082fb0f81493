import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../schema/config.js';

function rejects(env: Record<string, string>, variable: string): ConfigError {
  let caught: unknown;
  try {
    loadConfig(env, 2);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const e = caught as ConfigError;
  expect(e.variable).toBe(variable);
  expect(e.code).toBe('CONFIG_INVALID');
  expect(e.message).toContain(variable);
  return e;
}

describe('config', () => {
  it('defaults to a single machine: embedded PostgreSQL, in-process fan-out, port 8080, one engine worker per core', () => {
    const c = loadConfig({}, 2);
    expect(c.database_url).toBeNull();
    expect(c.redis_url).toBeNull();
    expect(c.port).toBe(8080);
    expect(c.engine_workers).toBe(2);
    expect(c.log_level).toBe('info');
    expect(c.seed_demo).toBe(false);
    expect(c.data_dir.startsWith('/')).toBe(true);
  });

  it('reads every variable it documents', () => {
    const c = loadConfig(
      {
        DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
        REDIS_URL: 'redis://127.0.0.1:6379',
        PORT: '9001',
        HOST: '127.0.0.1',
        KWX_DATA_DIR: '/var/tmp/kwx',
        KWX_EMBEDDED_PG_PORT: '6000',
        LOG_LEVEL: 'warn',
        KWX_ENGINE_WORKERS: '3',
        KWX_JOURNAL_BATCH_MAX: '1000',
        KWX_JOURNAL_BATCH_WAIT_MS: '5',
        KWX_INTERVALS_AHEAD_HOURS: '48',
        KWX_SEED_DEMO: 'yes',
      },
      2,
    );
    expect(c).toMatchObject({
      database_url: 'postgres://postgres@127.0.0.1:5432/test',
      redis_url: 'redis://127.0.0.1:6379',
      port: 9001,
      host: '127.0.0.1',
      data_dir: '/var/tmp/kwx',
      embedded_pg_port: 6000,
      log_level: 'warn',
      engine_workers: 3,
      journal_batch_max: 1000,
      journal_batch_wait_ms: 5,
      intervals_ahead_hours: 48,
      seed_demo: true,
    });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', REDIS_URL: '  ' }, 2)).toMatchObject({ database_url: null, redis_url: null });
  });

  it.each([
    ['KWX_INTERVALS_AHEAD_HOURS', '-1'],
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['KWX_ENGINE_WORKERS', '0'],
    ['KWX_JOURNAL_BATCH_MAX', '1e3'],
    ['KWX_EMBEDDED_PG_PORT', '0'],
    ['DATABASE_URL', 'not a url'],
    ['DATABASE_URL', 'mysql://root@localhost/test'],
    ['REDIS_URL', 'http://127.0.0.1:6379'],
    ['LOG_LEVEL', 'chatty'],
    ['KWX_SEED_DEMO', 'maybe'],
  ])('rejects %s=%s with a message naming the variable', (variable, value) => {
    const e = rejects({ [variable]: value }, variable);
    expect(e.got).toBe(value.trim());
    expect(e.expected.length).toBeGreaterThan(3);
  });
});
