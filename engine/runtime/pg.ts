// PostgreSQL connections for the runtime. postgres.js writes a COPY's CopyDone in a separate
// packet; over TCP with Nagle on, each small COPY then stalls ~40–90 ms on delayed ACK (measured
// here: 1,000-row COPYs 20 k rows/s with Nagle, 143 k rows/s without). So TCP sockets are opened
// with noDelay. A unix-socket URL (?host=/var/run/postgresql) is left to postgres.js.
import { connect as netConnect, type Socket } from 'node:net';
import postgres from 'postgres';
import { pgTarget, type Sql } from '../../schema/db.js';

export interface PgOptions {
  max?: number;
  application?: string;
  /** Seconds; a connection attempt fails after this. */
  connect_timeout_s?: number;
  /** Called when a connection of the pool closes (its session, and any session lock, is gone). */
  onclose?: () => void;
}

export function connectNoDelay(url: string, options: PgOptions = {}): Sql {
  const { url: target, path, host, port } = pgTarget(url);
  const unix = path !== undefined;
  const timeout_ms = (options.connect_timeout_s ?? 5) * 1000;
  return postgres(target, {
    ...(unix ? { path } : {}),
    max: options.max ?? 1,
    onnotice: () => {},
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: options.connect_timeout_s ?? 5,
    connection: { application_name: options.application ?? 'kwx-runtime' },
    ...(options.onclose !== undefined ? { onclose: options.onclose } : {}),
    ...(unix
      ? {}
      : {
          socket: () =>
            new Promise<Socket>((resolve, reject) => {
              const s = netConnect({ host, port, noDelay: true });
              const timer = setTimeout(() => {
                s.destroy();
                reject(new Error(`connect to ${host}:${port} timed out`));
              }, timeout_ms);
              s.once('connect', () => {
                clearTimeout(timer);
                s.removeListener('error', reject);
                resolve(s);
              });
              s.once('error', (err) => {
                clearTimeout(timer);
                reject(err);
              });
            }),
        }),
  }) as unknown as Sql;
}

/**
 * Settles like `p`, or rejects with `message` after `ms` (p is then abandoned and its outcome
 * ignored). postgres.js can leave a query on a dead connection pending forever, so every round
 * trip the runtime must see the end of runs under such a bound.
 */
export function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(message)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
