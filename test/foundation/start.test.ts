import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetricsRegistry } from '../../gateway/metrics.js';
import { startHttpServer } from '../../gateway/server.js';
import { assertNativeUws, loadUws, UwsUnavailableError } from '../../gateway/uws.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { freePort, startKwx, waitForStatus } from '../support/process.js';

describe('uWebSockets.js native build check', () => {
  it('accepts the native build that is installed for this Node', () => {
    const uws = loadUws();
    expect(typeof uws.App).toBe('function');
  });

  it('refuses the ws-based fallback shim with a message naming the supported Node versions', () => {
    const shim = { App: () => ({}), _cfg: () => {}, us_listen_socket_close: () => {}, us_socket_local_port: () => 0 };
    let caught: unknown;
    try {
      assertNativeUws(shim, '127', 'v22.0.0');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UwsUnavailableError);
    expect((caught as UwsUnavailableError).code).toBe('UWS_NATIVE_UNAVAILABLE');
    expect((caught as Error).message).toMatch(/v22\.0\.0.*Node 20/);
  });
});

describe('HTTP server', () => {
  it('answers /health 503 until ready, 200 once ready, 503 while stopping; serves /metrics and a JSON 404', async () => {
    const server = await startHttpServer({ host: '127.0.0.1', port: 0, metrics: createMetricsRegistry(), version: 'test' });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      const starting = await fetch(`${base}/health`);
      expect(starting.status).toBe(503);
      expect(await starting.json()).toMatchObject({ status: 'starting' });
      server.setHealth('ok', { database: 'external' });
      const ok = await fetch(`${base}/health`);
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ status: 'ok', database: 'external', version: 'test' });
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('process_cpu_user_seconds_total');
      const missing = await fetch(`${base}/no/such/route`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ code: 'NOT_FOUND' });
      server.setHealth('stopping');
      expect((await fetch(`${base}/health`)).status).toBe(503);
    } finally {
      server.close();
    }
  });
});

describe('kwx process (npm start)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
  });
  afterAll(async () => {
    await db.drop();
  });

  it('stops at start-up with exit code 2 and a message naming a bad variable', async () => {
    const kwx = startKwx({ PORT: 'eighty', DATABASE_URL: db.url });
    expect(await kwx.exited).toBe(2);
    expect(kwx.stderr()).toMatch(/configuration error: PORT: expected an integer/);
  });

  it('refuses an unknown option and --bootstrap-admin without an email, with exit code 2', async () => {
    const bogus = startKwx({ PORT: '0', DATABASE_URL: db.url }, ['--bogus']);
    expect(await bogus.exited).toBe(2);
    expect(bogus.stderr()).toContain('unknown option --bogus');
    const noEmail = startKwx({ PORT: '0', DATABASE_URL: db.url }, ['--bootstrap-admin', '--exit']);
    expect(await noEmail.exited).toBe(2);
    expect(noEmail.stderr()).toContain('--bootstrap-admin needs an email address');
  });

  it('answers /health 503 while its database does not answer yet', async () => {
    // A TCP server that accepts and never speaks: the PostgreSQL handshake hangs.
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const addr = silent.address();
    const pgPort = typeof addr === 'object' && addr !== null ? addr.port : 0;
    const kwx = startKwx({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: `postgres://postgres@127.0.0.1:${pgPort}/postgres`, LOG_LEVEL: 'info' });
    try {
      const port = await kwx.port;
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'starting' });
    } finally {
      kwx.child.kill('SIGTERM');
      await kwx.exited;
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('with DATABASE_URL: migrates, answers /health 200, and exits 0 on SIGTERM', async () => {
    const kwx = startKwx({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: db.url, LOG_LEVEL: 'info' }, ['--seed-demo']);
    const port = await kwx.port;
    expect(await waitForStatus(`http://127.0.0.1:${port}/health`, 200, 30_000)).toBe(200);
    const [zone] = await db.sql<{ code: string }[]>`select code from grid_zones where code = 'DEMO-1'`;
    expect(zone.code).toBe('DEMO-1');
    const [m] = await db.sql<{ n: string }[]>`select count(*)::text as n from schema_migrations`;
    expect(Number(m.n)).toBeGreaterThanOrEqual(1);
    kwx.child.kill('SIGTERM');
    const kwxCode = await kwx.exited;
    // on failure, the end of kwx's stderr says what made it exit otherwise
    if (kwxCode !== 0) throw new Error(`kwx exited ${kwxCode} on SIGTERM; stderr ends:\n${kwx.stderr().slice(-3000)}`);
    expect(kwx.stderr()).toContain('"msg":"shutting down"');
  });
});

describe('kwx on a fresh machine (embedded PostgreSQL)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kwx-fresh-'));
    chmodSync(dir, 0o755); // as root, PostgreSQL runs as `postgres` and must reach the data directory
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts embedded PostgreSQL in a data directory that survives a restart, and stops it on SIGTERM', async () => {
    const pgPort = String(await freePort());
    const env = { PORT: '0', HOST: '127.0.0.1', DATABASE_URL: '', KWX_DATA_DIR: dir, KWX_EMBEDDED_PG_PORT: pgPort, LOG_LEVEL: 'info' };

    const first = startKwx(env, ['--seed-demo']);
    const port1 = await first.port;
    expect(await waitForStatus(`http://127.0.0.1:${port1}/health`, 200, 90_000)).toBe(200);
    expect(await (await fetch(`http://127.0.0.1:${port1}/health`)).json()).toMatchObject({ database: 'embedded' });
    first.child.kill('SIGTERM');
    const firstCode = await first.exited;
    // on failure, the end of kwx's stderr says what made it exit otherwise
    if (firstCode !== 0) throw new Error(`kwx exited ${firstCode} on SIGTERM; stderr ends:\n${first.stderr().slice(-3000)}`);
    expect(first.stderr()).toMatch(/"msg":"migrations"[^\n]*"applied":\["0001_foundation"/);
    const pidFile = join(dir, 'pg', 'postmaster.pid');
    expect(existsSync(join(dir, 'pg', 'PG_VERSION'))).toBe(true);
    expect(existsSync(pidFile)).toBe(false); // PostgreSQL stopped with kwx

    const second = startKwx(env);
    const port2 = await second.port;
    expect(await waitForStatus(`http://127.0.0.1:${port2}/health`, 200, 90_000)).toBe(200);
    second.child.kill('SIGTERM');
    const secondCode = await second.exited;
    // on failure, the end of kwx's stderr says what made it exit otherwise
    if (secondCode !== 0) throw new Error(`kwx exited ${secondCode} on SIGTERM; stderr ends:\n${second.stderr().slice(-3000)}`);
    // the same cluster: nothing left to apply, and the password file is reused
    expect(second.stderr()).toMatch(/"msg":"migrations"[^\n]*"applied":\[\]/);
    expect(readFileSync(join(dir, 'pg.password'), 'utf8').trim().length).toBeGreaterThan(10);
  });
});
