import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { TestProject } from 'vitest/node';
import { assertReachable, startEmbeddedPostgres, type EmbeddedPostgres } from '../../schema/db.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Admin URL of the PostgreSQL server the tests use (each test file makes its own database). */
    databaseUrl: string;
    /** Redis URL, or '' when none is configured (in-process fan-out only). */
    redisUrl: string;
  }
}

let embedded: EmbeddedPostgres | undefined;
let embeddedDir: string | undefined;

/**
 * With DATABASE_URL set (CI), tests use that server and fail when it is unreachable.
 * Without it (a fresh machine), one embedded PostgreSQL is started for the whole run.
 * REDIS_URL, when set, must answer PING; tests that need Redis read it from `inject('redisUrl')`.
 */
export async function setup(project: TestProject): Promise<void> {
  // CI (.ci/run sets KWX_TEST_REQUIRE_SERVERS=1) must test against the real servers: a missing URL
  // fails the run instead of falling back to embedded PostgreSQL or skipping the Redis tests.
  if (process.env.KWX_TEST_REQUIRE_SERVERS === '1') {
    for (const v of ['DATABASE_URL', 'REDIS_URL']) {
      if ((process.env[v] ?? '') === '') throw new Error(`KWX_TEST_REQUIRE_SERVERS=1 but ${v} is not set: CI tests against the real PostgreSQL and Redis`);
    }
  }
  let databaseUrl = process.env.DATABASE_URL ?? '';
  if (databaseUrl !== '') {
    await assertReachable(databaseUrl);
  } else {
    embeddedDir = mkdtempSync(join(tmpdir(), 'kwx-test-pg-'));
    const { chmodSync } = await import('node:fs');
    chmodSync(embeddedDir, 0o755);
    embedded = await startEmbeddedPostgres({ dir: embeddedDir, port: await freePort(), ephemeral: true });
    databaseUrl = embedded.url;
  }
  const redisUrl = process.env.REDIS_URL ?? '';
  if (redisUrl !== '') await assertRedisReachable(redisUrl);
  project.provide('databaseUrl', databaseUrl);
  project.provide('redisUrl', redisUrl);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
  if (embeddedDir !== undefined) rmSync(embeddedDir, { recursive: true, force: true });
}

async function assertRedisReachable(url: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000, retryStrategy: () => null });
  try {
    await redis.connect();
    const pong = await redis.ping();
    if (pong !== 'PONG') throw new Error(`unexpected PING answer ${pong}`);
  } catch (err) {
    throw new Error(`Redis at ${url} is unreachable: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
