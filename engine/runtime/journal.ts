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
//
// One writer per database: with `lock_key`, the journal's own session holds a session advisory
// lock, so a COPY only ever runs on a session that holds it. When that session ends (an outage,
// a dropped connection), the lock is gone with it: the writer re-takes it on its next session (at
// once in the background, and before any write), ending a session of its own that still holds
// it server-side. If another writer holds it, or the journal holds rows this writer did not
// write, the writer is FENCED for good: it never writes again and the runtime refuses commands.
import type { Logger } from '../../schema/log.js';
import type { Sql } from '../../schema/db.js';
import { COPY_HEADER, COPY_TRAILER } from './codec.js';
import { connectNoDelay, withDeadline } from './pg.js';

export interface JournalChunk {
  /** Binary COPY tuples (no header or trailer). */
  bytes: Uint8Array;
  rows: number;
  /** Identity of the chunk's first row: used to tell whether a batch committed before a failure. */
  zone_id: number;
  first_seq: number;
  /** Flat pairs (zone_id, last seq in this chunk) of every zone in the chunk; default: one zone from first_seq. */
  zone_last?: number[];
}

/** FENCED: another writer took the journal lock (or wrote rows) while this one's session was gone; final. */
export type JournalState = 'AVAILABLE' | 'UNAVAILABLE' | 'FENCED' | 'CLOSED';

/** Thrown inside the writer when it finds another writer in its place. */
class FencedError extends Error {}

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
  /** Session advisory lock key: only a session holding it writes (one writer per database). */
  lock_key?: bigint;
  /** open(): attempts, 100 ms apart, to take a lock another writer holds before giving up. Default 100. */
  lock_wait_attempts?: number;
  /** Called once when the writer is fenced (see JournalState). */
  onFenced?: (reason: string) => void;
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

interface Session {
  sql: Sql;
  pid: number;
  started: string;
  alive: boolean;
}

export class JournalWriter {
  private session: Session | null = null;
  /** Backends this writer used before (pid, backend_start): a lock held by one of them is ours to end. */
  private pastSessions: { pid: number; started: string }[] = [];
  private opening: Promise<Session> | null = null;
  /** Highest seq ever appended per zone: the journal may not hold more than this (else someone else wrote). */
  private readonly appendedMax = new Map<number, number>();
  private lockedOnce = false;
  private relockTimer: NodeJS.Timeout | null = null;
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

  /** Opens the session and takes the lock (waiting for a writer that holds it to go). */
  async open(): Promise<void> {
    await this.ensureSession(true);
  }

  append(chunk: JournalChunk, onCommitted: () => void): void {
    if (this._state === 'CLOSED') throw new Error('journal writer is closed');
    if (this._state === 'FENCED') return; // never written, never acknowledged (the runtime has failed its commands)
    const zl = chunk.zone_last;
    if (zl === undefined) this.noteAppended(chunk.zone_id, chunk.first_seq + chunk.rows - 1);
    else for (let i = 0; i < zl.length; i += 2) this.noteAppended(zl[i], zl[i + 1]);
    if (this.queue.length === 0) this.oldestQueuedAt = performance.now();
    this.queue.push({ chunk, onCommitted });
    this.queuedRows += chunk.rows;
    this.schedule();
  }

  private noteAppended(zone_id: number, seq: number): void {
    if ((this.appendedMax.get(zone_id) ?? 0) < seq) this.appendedMax.set(zone_id, seq);
  }

  /** Resolves when everything appended so far has committed (at once when fenced: it never will). */
  drain(): Promise<void> {
    if (this._state === 'FENCED') return Promise.resolve();
    if (this.backlogRows === 0 && !this.inflight && this.releases.length === 0 && !this.releasing) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async close(): Promise<void> {
    await this.drain();
    this._state = 'CLOSED';
    if (this.timer) clearTimeout(this.timer);
    if (this.relockTimer) clearTimeout(this.relockTimer);
    const s = this.session;
    this.session = null;
    if (s !== null) {
      s.alive = false;
      await s.sql.end({ timeout: 1 });
    }
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
    let fenced = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const fresh = this.session === null || !this.session.alive;
        const sql = await this.ensureSession();
        if ((attempt > 0 || fresh) && (await this.committedBefore(sql, batch[0].chunk))) break;
        await this.copy(sql, body);
        break;
      } catch (err) {
        if (err instanceof FencedError) {
          fenced = true;
          break;
        }
        this.stats.retries++;
        this.dropConnection();
        this.setState('UNAVAILABLE', (err as Error).message);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(1000, delay * 2);
      }
    }
    clearTimeout(slow);
    if (fenced) {
      // Nothing more is written or released; drain() waiters are let go (nothing will commit).
      this.queue = [];
      this.queuedRows = 0;
      this.inflightRows = 0;
      for (const w of this.drainWaiters.splice(0)) w();
      return;
    }
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

  /** The live session (holding the lock when lock_key is set), opening a new one when needed. */
  private ensureSession(initial = false): Promise<Sql> {
    const s = this.session;
    if (s !== null && s.alive) return Promise.resolve(s.sql);
    if (this._state === 'FENCED') return Promise.reject(new FencedError('the journal writer is fenced'));
    if (this.opening === null) {
      this.opening = this.openSession(initial).finally(() => (this.opening = null));
    }
    return this.opening.then((x) => x.sql);
  }

  private async openSession(initial: boolean): Promise<Session> {
    this.dropConnection();
    const sess: Session = { sql: null as unknown as Sql, pid: 0, started: '', alive: true };
    sess.sql = connectNoDelay(this.opts.url, {
      max: 1,
      application: 'kwx-journal',
      connect_timeout_s: 2,
      onclose: () => this.sessionClosed(sess),
    });
    this.session = sess;
    try {
      const [me] = await this.withTimeout(
        sess.sql<{ pid: number; started: string }[]>`select pid, backend_start::text as started from pg_stat_activity where pid = pg_backend_pid()`,
      );
      sess.pid = me.pid;
      sess.started = me.started;
      if (this.opts.lock_key !== undefined) await this.lock(sess, initial);
      if (!sess.alive) throw new Error('journal session closed while it was being opened');
      return sess;
    } catch (err) {
      if (this.session === sess) this.dropConnection();
      throw err;
    }
  }

  private async lock(sess: Session, initial: boolean): Promise<void> {
    const key = this.opts.lock_key!;
    const attempts = initial ? (this.opts.lock_wait_attempts ?? 100) : 1;
    let endedOurs = 0;
    for (let i = 0; ; i++) {
      const [r] = await this.withTimeout(
        sess.sql<{ ok: boolean; pid: number }[]>`select pg_try_advisory_lock(${key.toString()}::bigint) as ok, pg_backend_pid() as pid`,
      );
      if (r.pid !== sess.pid) throw new Error('journal session changed while taking the lock');
      if (r.ok) break;
      // Held: by a session of ours the server has not ended yet (end it), or by another writer.
      const holders = await this.withTimeout(
        sess.sql<{ pid: number; started: string }[]>`
          select a.pid, a.backend_start::text as started from pg_locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
            and ((l.classid::bigint << 32) | l.objid::bigint) = ${key.toString()}::bigint and l.objsubid = 1`,
      );
      const ours = holders.filter((h) => this.pastSessions.some((p) => p.pid === h.pid && p.started === h.started));
      if (ours.length === holders.length) {
        // Held by old sessions of ours (end them), or by nobody any more (released in between): retry.
        if (++endedOurs > 5) throw new Error('an old session of this runtime still holds the journal lock');
        for (const h of ours) await this.withTimeout(sess.sql`select pg_terminate_backend(${h.pid}::int, 2000)`);
        i--;
        continue;
      }
      if (i + 1 < attempts) {
        await new Promise((res) => setTimeout(res, 100));
        continue;
      }
      if (initial) throw new Error('another kwx runtime holds the journal lock of this database');
      this.fence(`another runtime holds the journal lock (backend ${holders.map((h) => h.pid).join(', ')})`);
    }
    if (this.lockedOnce) await this.checkNoForeignRows(sess.sql);
    this.lockedOnce = true;
  }

  /** After re-taking the lock: the journal may hold no row beyond what this writer appended. */
  private async checkNoForeignRows(sql: Sql): Promise<void> {
    const zones = [...this.appendedMax.keys()];
    if (zones.length === 0) return;
    const rows = await this.withTimeout(
      sql<{ zone_id: string; seq: string }[]>`select zone_id, max(seq) as seq from engine_journal where zone_id = any(${zones}::bigint[]) group by zone_id`,
    );
    for (const r of rows) {
      const mine = this.appendedMax.get(Number(r.zone_id)) ?? 0;
      if (Number(r.seq) > mine) this.fence(`zone ${r.zone_id} has journal rows up to seq ${r.seq}, beyond this runtime's ${mine}: another runtime wrote meanwhile`);
    }
  }

  private fence(reason: string): never {
    this.setState('FENCED', reason);
    this.dropConnection();
    try {
      this.opts.onFenced?.(reason);
    } catch {
      // the runtime's handler must not stop the writer from stopping
    }
    throw new FencedError(reason);
  }

  /** A session of ours that may still exist on the server (and hold the lock) for a moment. */
  private remember(s: Session): void {
    if (s.pid <= 0 || this.pastSessions.some((p) => p.pid === s.pid && p.started === s.started)) return;
    this.pastSessions.push({ pid: s.pid, started: s.started });
    if (this.pastSessions.length > 16) this.pastSessions.shift();
  }

  private sessionClosed(sess: Session): void {
    if (!sess.alive) return;
    sess.alive = false;
    this.remember(sess);
    // Re-take the lock as soon as the database is back, even with nothing to write.
    if (this.opts.lock_key !== undefined && this._state !== 'CLOSED' && this._state !== 'FENCED') this.scheduleRelock(100);
  }

  private scheduleRelock(delay_ms: number): void {
    if (this.relockTimer !== null) return;
    this.relockTimer = setTimeout(() => {
      this.relockTimer = null;
      if (this._state === 'CLOSED' || this._state === 'FENCED' || (this.session !== null && this.session.alive)) return;
      if (this.inflight) return; // the commit loop re-opens the session itself
      this.ensureSession().catch(() => this.scheduleRelock(Math.min(1000, delay_ms * 2)));
    }, delay_ms);
    this.relockTimer.unref();
  }

  /** True when the writer's session is open and (with lock_key) holds the lock. */
  get locked(): boolean {
    return this.session !== null && this.session.alive && this.session.pid > 0 && this.lockedOnce;
  }

  private dropConnection(): void {
    const s = this.session;
    this.session = null;
    if (s === null) return;
    s.alive = false;
    this.remember(s);
    void s.sql.end({ timeout: 0 }).catch(() => {});
  }

  /**
   * Whether the batch starting with `first` is already in the journal (it committed before the
   * connection broke). Its first row must then be byte for byte ours; a different row there
   * means another writer took over (fenced).
   */
  private async committedBefore(sql: Sql, first: JournalChunk): Promise<boolean> {
    const rows = await this.withTimeout(
      sql<{ payload: Uint8Array }[]>`select payload from engine_journal where zone_id = ${first.zone_id} and seq = ${first.first_seq}`,
    );
    if (rows.length === 0) return false;
    const b = first.bytes;
    const len = new DataView(b.buffer, b.byteOffset, b.byteLength).getInt32(32);
    if (Buffer.compare(Buffer.from(rows[0].payload), Buffer.from(b.buffer, b.byteOffset + 36, len)) !== 0) {
      this.fence(`zone ${first.zone_id} seq ${first.first_seq} in the journal is not the row this runtime wrote: another runtime wrote meanwhile`);
    }
    return true;
  }

  private copy(sql: Sql, body: Buffer): Promise<void> {
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
    return withDeadline(p, this.opts.commit_timeout_ms, `journal commit took longer than ${this.opts.commit_timeout_ms} ms`);
  }

  private setState(state: JournalState, reason: string): void {
    if (this._state === state || this._state === 'CLOSED') return;
    this._state = state;
    if (state === 'UNAVAILABLE') this.opts.log?.warn('journal unavailable', { reason });
    else if (state === 'FENCED') this.opts.log?.error('journal fenced: this runtime writes no more', { reason });
    else this.opts.log?.info('journal available again', { reason });
    this.opts.onStateChange?.(state, reason);
  }
}
