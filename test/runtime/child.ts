// Runs the compiled runtime (dist/engine/runtime/main.js) as a child process over IPC.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../schema/paths.js';
import type { EngineSnapshot } from '../../engine/core/types.js';
import type { RuntimeStatus, SubmitCommand, SubmitResult } from '../../engine/runtime/types.js';

export const MAIN_JS = join(PROJECT_ROOT, 'dist', 'engine', 'runtime', 'main.js');

export interface Child {
  proc: ChildProcess;
  ready: RuntimeStatus;
  submit(zone_id: number, cmd: SubmitCommand): Promise<SubmitResult>;
  dump(zone_id: number): Promise<{ state: EngineSnapshot; state_hash: string }>;
  syncProjections(): Promise<void>;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
}

export async function startChild(env: Record<string, string>): Promise<Child> {
  if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run \`npm run build\` first`);
  const proc = fork(MAIN_JS, [], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, (m: Record<string, unknown>) => void>();
  let nextId = 1;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const ready = await new Promise<RuntimeStatus>((resolve, reject) => {
    proc.on('message', (m: Record<string, unknown>) => {
      if (m.t === 'ready') resolve(m.status as RuntimeStatus);
      else pending.get(m.id as number)?.(m);
    });
    proc.once('exit', (code) => reject(new Error(`runtime child exited with ${String(code)} before it was ready`)));
  });
  const call = (msg: Record<string, unknown>): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const id = nextId++;
      pending.set(id, (m) => {
        pending.delete(id);
        resolve(m);
      });
      if (proc.connected) proc.send({ ...msg, id });
    });
  return {
    proc,
    ready,
    exited,
    submit: async (zone_id, cmd) => (await call({ t: 'submit', zone_id, cmd })).result as SubmitResult,
    dump: async (zone_id) => {
      const m = await call({ t: 'dump', zone_id });
      return { state: m.state as EngineSnapshot, state_hash: m.state_hash as string };
    },
    syncProjections: async () => {
      await call({ t: 'sync_projections' });
    },
  };
}
