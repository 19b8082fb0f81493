import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../schema/paths.js';

/** A kwx process started from the compiled build (`npm test` builds first). */
export interface KwxProcess {
  child: ChildProcess;
  /** Everything written to stderr so far (structured logs). */
  stderr(): string;
  /** Everything written to stdout so far (credentials printed once by --seed-demo / --bootstrap-admin). */
  stdout(): string;
  /** Resolves with the port from the "listening" log line. */
  port: Promise<number>;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

export function startKwx(env: Record<string, string | undefined>, args: string[] = []): KwxProcess {
  const entry = join(PROJECT_ROOT, 'dist', 'gateway', 'main.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` (npm test does it first)`);
  const fullEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) fullEnv[k] = v;
  const child = spawn(process.execPath, [entry, ...args], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let resolvePort: (p: number) => void;
  const port = new Promise<number>((r) => (resolvePort = r));
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    const m = /"msg":"listening"[^\n]*"port":(\d+)/.exec(err);
    if (m !== null) resolvePort(Number(m[1]));
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, stderr: () => err, stdout: () => out, port, exited };
}

/** Polls GET url until it answers `status` or the deadline passes; returns the last status seen. */
export async function waitForStatus(url: string, status: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = 0;
  while (Date.now() < deadline) {
    try {
      last = (await fetch(url)).status;
      if (last === status) return last;
    } catch {
      last = 0;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
