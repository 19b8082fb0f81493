// The journal writer: group commit of engine_journal rows to PostgreSQL.
//
// Rows arrive as chunks of binary COPY tuples already encoded by the zone workers, so this thread
// only concatenates bytes. One COPY per batch on one dedicated connection = one transaction per
// batch (autocommit COPY); while a batch commits, the next one accumulates (matching goes on);
// every chunk's callback runs only after the batch holding it has committed, in append order.
//
// Failure: a batch that fails or takes longer than commit_timeout_ms marks the journal
// UNAVAILABLE, its connection is dropped, and the same batch is retried with backoff on a new
// connection until it commits (first checking whether it did commit before the connection broke,
// so a batch is never written twice). The runtime refuses new commands while UNAVAILABLE or
// while the backlog is at its bound; nothing queues without limit.
import type { Logger } from '../../schema/log.js';
import type { Sql } from '../../schema/db.js';
import { COPY_HEADER, COPY_TRAILER } from './codec.js';
import { connectNoDelay } from './pg.js';

export interface JournalChunk {
  /** Binary COPY tuples (no header or trailer). */
  bytes: Uint8Array;
  rows: number;
  /** Identity of the chunk's first row: used to tell whether a batch committed before a failure. */
  zone_id: number;
  first_seq: number;
}

export type JournalState = 'AVAILABLE' | 'UNAVAILABLE' | 'CLOSED';

export interface JournalWriterOptions {
  url: string;
  /** A batch is flushed at once when it holds this many rows. */
  batch_max_rows: number;
  /** A row waits at most this long for its batch to start (when no commit is in flight). */
  batch_wait_ms: number;
  /** Appends beyond this many uncommitted rows are refused by the runtime (backpressure bound). */
  backlog_max_rows: number;
  /** A commit still running after this marks the journal UNAVAILABLE (new commands refused) until it ends. */
  slow_commit_ms: number;
  /** A commit taking longer than this is abandoned: its connection is dropped and the batch retried. */
  commit_timeout_ms: number;
  /** First retry delay; doubles up to 1 s. */
  retry_initial_ms?: number;
  log?: Logger;
  onStateChange?: (state: JournalState, reason: string) => void;
}

interface Pending {
  chunk: JournalChunk;
  onCommitted: () => void;
}

export interface JournalStats {
  commits: number;
  rows: number;
  bytes: number;
  retries: number;
  /** Wall time with a commit in flight. */
  busy_ms: number;
}

export class JournalWriter {
  private sql: Sql | null = null;
  private queue: Pending[] = [];
  private queuedRows = 0;
  private oldestQueuedAt = 0;
  private inflightRows = 0;
  private inflight = false;
  private timer: NodeJS.Timeout | null = null;
  private drainWaiters: (() => void)[] = [];
  private _state: JournalState = 'AVAILABLE';
  readonly stats: JournalStats = { commits: 0, rows: 0, bytes: 0, retries: 0, busy_ms: 0 };

  constructor(private readonly opts: JournalWriterOptions) {}

  get state(): JournalState {
    return this._state;
  }

  /** Rows appended and not yet committed. */
  get backlogRows(): number {
    return this.queuedRows + this.inflightRows;
  }

  /** True when a new command may be accepted: journal reachable and backlog under its bound. */
  canAccept(): boolean {
    return this._state === 'AVAILABLE' && this.backlogRows < this.opts.backlog_max_rows;
  }

  append(chunk: JournalChunk, onCommitted: () => void): void {
    if (this._state === 'CLOSED') throw new Error('journal writer is closed');
    if (this.queue.length === 0) this.oldestQueuedAt = performance.now();
    this.queue.push({ chunk, onCommitted });
    this.queuedRows += chunk.rows;
    this.schedule();
  }

  /** Resolves when everything appended so far has committed. */
  drain(): Promise<void> {
    if (this.backlogRows === 0 && !this.inflight && this.releases.length === 0 && !this.releasing) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async close(): Promise<void> {
    await this.drain();
    this._state = 'CLOSED';
    if (this.timer) clearTimeout(this.timer);
    await this.sql?.end({ timeout: 1 });
    this.sql = null;
  }

  private schedule(): void {
    if (this.inflight || this.queue.length === 0) return;
    const waited = performance.now() - this.oldestQueuedAt;
    if (this.queuedRows >= this.opts.batch_max_rows || waited >= this.opts.batch_wait_ms) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      this.inflight = true;
      // Let the current tick's appends join the batch.
      setImmediate(() => void this.commitNext());
    } else if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.oldestQueuedAt = -Infinity;
        this.schedule();
      }, this.opts.batch_wait_ms - waited);
    }
  }

  private takeBatch(): Pending[] {
    let rows = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || rows + this.queue[n].chunk.rows <= this.opts.batch_max_rows)) {
      rows += this.queue[n].chunk.rows;
      n++;
    }
    const batch = this.queue.splice(0, n);
    this.queuedRows -= rows;
    this.inflightRows = rows;
    this.oldestQueuedAt = performance.now();
    return batch;
  }

  private async commitNext(): Promise<void> {
    const batch = this.takeBatch();
    if (batch.length === 0) {
      this.inflight = false;
      return;
    }
    const parts: Uint8Array[] = [COPY_HEADER];
    for (const p of batch) parts.push(p.chunk.bytes);
    parts.push(COPY_TRAILER);
    const body = Buffer.concat(parts);
    const started = performance.now();
    let delay = this.opts.retry_initial_ms ?? 50;
    const slow = setTimeout(() => this.setState('UNAVAILABLE', `journal commit slower than ${this.opts.slow_commit_ms} ms`), this.opts.slow_commit_ms);
    for (let attempt = 0; ; attempt++) {
      try {
        if (attempt > 0 && (await this.committedBefore(batch[0].chunk))) break;
        await this.copy(body);
        break;
      } catch (err) {
        this.stats.retries++;
        this.dropConnection();
        this.setState('UNAVAILABLE', (err as Error).message);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(1000, delay * 2);
      }
    }
    clearTimeout(slow);
    this.stats.busy_ms += performance.now() - started;
    this.stats.commits++;
    this.stats.rows += this.inflightRows;
    this.stats.bytes += body.length;
    this.inflightRows = 0;
    if (this._state === 'UNAVAILABLE') this.setState('AVAILABLE', 'journal commit succeeded');
    this.inflight = false;
    // Start the next commit before releasing this batch's outputs, and release them one chunk
    // per event-loop turn: acks trigger new submissions, and a long synchronous release would
    // keep the next COPY's round trips waiting behind it.
    if (this.queue.length > 0) this.schedule();
    for (const p of batch) this.releases.push(p.onCommitted);
    this.pumpReleases();
  }

  private releases: (() => void)[] = [];
  private releasing = false;

  private pumpReleases(): void {
    if (this.releasing) return;
    if (this.releases.length === 0) {
      if (this.backlogRows === 0 && !this.inflight && this.drainWaiters.length > 0) for (const w of this.drainWaiters.splice(0)) w();
      return;
    }
    this.releasing = true;
    setImmediate(() => {
      this.releasing = false;
      const fn = this.releases.shift();
      fn?.();
      this.pumpReleases();
    });
  }

  private connection(): Sql {
    if (this.sql === null) this.sql = connectNoDelay(this.opts.url, { max: 1, application: 'kwx-journal', connect_timeout_s: 2 });
    return this.sql;
  }

  private dropConnection(): void {
    const sql = this.sql;
    this.sql = null;
    if (sql) void sql.end({ timeout: 0 }).catch(() => {});
  }

  private async committedBefore(first: JournalChunk): Promise<boolean> {
    const rows = await this.withTimeout(
      this.connection()`select 1 from engine_journal where zone_id = ${first.zone_id} and seq = ${first.first_seq}`,
    );
    return rows.length > 0;
  }

  private copy(body: Buffer): Promise<void> {
    const sql = this.connection();
    return this.withTimeout(
      new Promise<void>((resolve, reject) => {
        const q = sql`copy engine_journal (zone_id, seq, kind, payload, ts) from stdin (format binary)`;
        q.writable().then((w) => {
          w.on('error', reject);
          w.on('finish', resolve);
          w.end(body);
        }, reject);
      }),
    );
  }

  // postgres.js does not report a failure that happens after CopyDone (the connection dropping
  // while the server commits), so every round trip runs under the commit bound.
  private withTimeout<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`journal commit took longer than ${this.opts.commit_timeout_ms} ms`)),
        this.opts.commit_timeout_ms,
      );
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

  private setState(state: JournalState, reason: string): void {
    if (this._state === state || this._state === 'CLOSED') return;
    this._state = state;
    if (state === 'UNAVAILABLE') this.opts.log?.warn('journal unavailable', { reason });
    else this.opts.log?.info('journal available again', { reason });
    this.opts.onStateChange?.(state, reason);
  }
}
