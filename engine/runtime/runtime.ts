// The engine runtime: sequencer, zone workers, journal, lifecycle clock and subscriptions.
//
//   submit(zone, cmd) ─▶ sequencer (seq, ts, order_id) ─▶ worker outbox ─▶ zone worker (engine)
//        ▲                                                                    │ COPY tuples + events
//        └── ack after commit ◀── journal writer (group commit) ◀────────────┘
//
// One writer per zone: a zone lives in exactly one worker, its commands are sequenced here in
// one place, and its results come back in seq order. Outputs (acks, subscriptions, lifecycle
// callbacks) are released only from the journal's commit callback.
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import type { Sql } from '../../schema/db.js';
import { MAX_ZONE_ID, orderIdFor } from './ids.js';
import { projectOnce, startProjector, type Projector } from './projections.js';
import { PROJECT_ROOT } from '../../schema/paths.js';
import type { Logger } from '../../schema/log.js';
import type { Command, EngineEvent, EngineSnapshot, IntervalView } from '../core/types.js';
import { JournalWriter, type JournalState } from './journal.js';
import { connectNoDelay, withDeadline } from './pg.js';
import { ROW_FIELDS, type FromWorker, type SnapshotOut, type ToWorker } from './protocol.js';
import { withFields } from '../../schema/objects.js';
import { CommandBatchWriter, decodeEventsAt, snapshotCopyChunks } from './codec.js';
import { scheduleIntervals } from './schedule.js';
import type {
  ClosedInterval,
  CommittedEvents,
  RuntimeStatus,
  SubmitCommand,
  SubmitError,
  SubmitResult,
  ZoneStatusView,
} from './types.js';

/** Commands per worker message; more are sent in the next message. */
export const WORKER_BATCH_MAX = 1024;
/**
 * A zone's next checkpoint comes after max(snapshot_every, this × its open orders) commands: with
 * 2, a checkpoint costs at most about one open order's hash and snapshot per two commands.
 */
export const SNAPSHOT_OPEN_FACTOR = 2;
/** A snapshot goes to PostgreSQL in writes of this size. */
const SNAPSHOT_WRITE_BYTES = 64 * 1024;
/** A snapshot save not done after this counts as failed (recovery then starts from an older one). */
const SNAPSHOT_SAVE_TIMEOUT_MS = 30_000;
/** start() waits up to this many 10 ms polls for the gate openings it sequenced to commit. */
const LIFECYCLE_CATCH_UP_POLLS = 1000;
/** Advisory lock held by the one runtime that writes the journal of a database. */
export const RUNTIME_LOCK_KEY = 0x6b77782d72756e74n; // "kwx-runt"


/** The compiled worker entry (workers run JavaScript: `npm run build` first, also under vitest). */
export function workerEntry(): string {
  return join(PROJECT_ROOT, 'dist', 'engine', 'runtime', 'worker.js');
}

export interface RuntimeOptions {
  database_url: string;
  /** Worker threads (zones are spread round-robin); default 2. */
  workers?: number;
  journal_batch_max?: number;
  journal_batch_wait_ms?: number;
  /** Uncommitted journal rows beyond which new commands get EXCHANGE_UNAVAILABLE. Default 16 × batch max. */
  backlog_max_rows?: number;
  /** A commit slower than this makes the exchange unavailable until it ends. Default 1000. */
  slow_commit_ms?: number;
  /** A commit slower than this is abandoned and retried on a new connection. Default 5000. */
  commit_timeout_ms?: number;
  /**
   * Commands between checkpoints (state hash in the journal + snapshot) per zone, at least.
   * Default 100,000; on a deep book, SNAPSHOT_OPEN_FACTOR × its open orders when that is more.
   */
  snapshot_every?: number;
  /**
   * Open orders each zone's engine is sized for at start (its order pool and indexes; they still
   * grow past it, in steps spread over the orders that come). Default: the engine's (1,024). A
   * zone expected to hold a deep book is best sized for it up front: ~100 bytes a slot, touched
   * at start (1,000,000 slots: ~100 MB per zone).
   */
  engine_order_slots?: number;
  /** Zones to run (default: every row of grid_zones). */
  zones?: number[];
  /** Drive delivery intervals from the clock (gate opening and closure). Default true. */
  lifecycle?: boolean;
  clock_tick_ms?: number;
  /** delivery_intervals is re-read this often for new intervals. Default 5000. */
  intervals_refresh_ms?: number;
  /**
   * When set, each refresh first writes the missing delivery intervals of the zones run here whose
   * gate opens within this many ms (schedule.ts: from the zone's interval length, gate leads and
   * capacity). Off by default (tests and benches make their own intervals); kwx sets it.
   */
  schedule_intervals_ahead_ms?: number;
  /** An idle zone with good-till-time orders gets EXPIRE_DUE this often. Default 1000. */
  expire_every_ms?: number;
  /** Project the journal into the orders and trades tables in the background. Default true. */
  projections?: boolean;
  /** A projection batch still running after this is abandoned, its connection dropped, and resumed on a new one. Default 10,000. */
  projection_batch_timeout_ms?: number;
  /** Wall clock, ms; injectable for tests. */
  now?: () => number;
  log?: Logger;
  onIntervalClosed?: (closed: ClosedInterval) => void;
}

type Resolve = (r: SubmitResult) => void;

/**
 * One shared promise executor: it hands the resolve function over through `grabbed` (the
 * executor runs synchronously inside `new Promise`), so a submit allocates no closure of its own
 * besides the promise and its resolving functions.
 */
let grabbed: Resolve = () => {};
const grabResolve = (resolve: Resolve): void => {
  grabbed = resolve;
};

/** The (frozen, shared) answer of takeBelow when no waiter is below. */
const NO_WAITERS: Resolve[] = Object.freeze([]) as unknown as Resolve[];

/**
 * The submitters waiting for a zone's commands, in seq order (results come back and commit in
 * seq order, so the oldest waiter is always the next one answered).
 */
export class WaiterQueue {
  // A ring (capacity a power of two, doubled when full): pushing and taking move no elements and
  // allocate nothing once it has grown (arrays that were shifted by slicing cost ~3 % of the main
  // thread's CPU in a saturated profile).
  private seqs = new Float64Array(1024);
  private fns: (Resolve | undefined)[] = new Array<Resolve | undefined>(1024).fill(undefined);
  private mask = 1023;
  private head = 0;
  private n = 0;

  get size(): number {
    return this.n;
  }

  push(seq: number, fn: Resolve): void {
    if (this.n > this.mask) this.grow();
    const i = (this.head + this.n) & this.mask;
    this.seqs[i] = seq;
    this.fns[i] = fn;
    this.n++;
  }

  private grow(): void {
    const cap = (this.mask + 1) * 2;
    const seqs = new Float64Array(cap);
    const fns = new Array<Resolve | undefined>(cap).fill(undefined);
    for (let k = 0; k < this.n; k++) {
      const i = (this.head + k) & this.mask;
      seqs[k] = this.seqs[i];
      fns[k] = this.fns[i];
    }
    this.seqs = seqs;
    this.fns = fns;
    this.mask = cap - 1;
    this.head = 0;
  }

  private shift(): Resolve {
    const fn = this.fns[this.head]!;
    this.fns[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.n--;
    return fn;
  }

  /** The waiter of `seq` if it is the oldest (always, unless a worker restart failed it already). */
  take(seq: number): Resolve | undefined {
    if (this.n === 0 || this.seqs[this.head] !== seq) return undefined;
    return this.shift();
  }

  /**
   * Removes and returns waiters older than `seq` (none, by construction: every sequenced command
   * comes back or is failed by a worker restart; a defence so one lost result cannot stall a zone).
   */
  takeBelow(seq: number): Resolve[] {
    // nearly always none: no array per result
    if (this.n === 0 || this.seqs[this.head] >= seq) return NO_WAITERS;
    const out: Resolve[] = [];
    while (this.n > 0 && this.seqs[this.head] < seq) out.push(this.shift());
    return out;
  }

  /** Removes and returns the waiters of seqs above `seq` (newest last). */
  takeAbove(seq: number): Resolve[] {
    let k = this.n;
    while (k > 0 && this.seqs[(this.head + k - 1) & this.mask] > seq) k--;
    const out: Resolve[] = [];
    for (let j = k; j < this.n; j++) {
      const i = (this.head + j) & this.mask;
      out.push(this.fns[i]!);
      this.fns[i] = undefined;
    }
    this.n = k;
    return out;
  }
}

interface IntervalRow {
  id: number;
  gate_opens_at_ms: number;
  gate_closes_at_ms: number;
  capacity_wh: number;
  status: string;
}

interface ZoneSlot {
  zone_id: number;
  worker: number;
  status: 'RECOVERING' | 'READY' | 'FAILED';
  next_seq: number;
  last_ts_ms: number;
  /** Highest seq whose result came back from the worker. */
  last_result_seq: number;
  since_checkpoint: number;
  /** Commands after which the next checkpoint is due: max(snapshot_every, SNAPSHOT_OPEN_FACTOR × open orders at the last one). */
  checkpoint_due: number;
  /** Highest seq whose journal row has committed (and been released). */
  committed_seq: number;
  /** Snapshots from the worker whose CHECKPOINT row has not committed yet, by seq. */
  snapshots_waiting: SnapshotOut[];
  snapshot_received_seq: number;
  last_command_ms: number;
  has_gtt: boolean;
  waiters: WaiterQueue;
  engine_intervals: Map<number, { closed: boolean }>;
  intervals: Map<number, IntervalRow>;
  /** Lifecycle commands sent and not yet committed, by interval (avoids sending twice). */
  lifecycle_pending: Set<string>;
  config: Command | null;
  last_recovery: ZoneStatusView['last_recovery'];
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  alive: boolean;
  outbox: CommandBatchWriter;
  scheduled: boolean;
  requests: Map<number, (m: FromWorker) => void>;
}

type Listener = (c: CommittedEvents) => void;

export interface Runtime {
  /** Sequences, matches and journals one command; resolves after it is durable (or with an error). */
  submit(zone_id: number, cmd: SubmitCommand): Promise<SubmitResult>;
  /** Committed events of one zone, every command, in seq order. Returns an unsubscribe function. */
  subscribeZone(zone_id: number, fn: Listener): () => void;
  /** Committed events that concern one user (its orders, both sides of its fills), in seq order per zone. */
  subscribeUser(user_id: number, fn: Listener): () => void;
  /** Every committed command of every zone. */
  subscribeAll(fn: Listener): () => void;
  /**
   * Writes a checkpoint (its hash in the journal) and a snapshot now; resolves after both are
   * durable, rejects if the snapshot could not be saved or died with its worker.
   */
  checkpoint(zone_id: number): Promise<{ seq: number; state_hash: string }>;
  /** The zone's engine state and hash as its worker holds them (tests, operators). */
  dump(zone_id: number): Promise<{ state: EngineSnapshot; state_hash: string }>;
  /**
   * Starts running a zone created after start-up (an operator's POST /admin/zones): a worker is
   * chosen, the zone is configured from grid_zones as its first journal row (or recovered from its
   * journal), projected, and its delivery intervals are driven. True when the zone runs here
   * (already or now); false when this runtime was started for other zones only.
   */
  addZone(zone_id: number): Promise<boolean>;
  status(): RuntimeStatus;
  /** Test hook: makes a worker die as if it had a bug. */
  crashWorker(index: number): void;
  /** Resolves when the orders/trades read models include every committed command. */
  syncProjections(): Promise<void>;
  /** Stops accepting, waits for the journal, stops workers. */
  stop(): Promise<void>;
}

export async function startRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const rt = new RuntimeImpl(opts);
  await rt.start();
  return rt;
}

const fail = (code: SubmitError['code'], message: string): SubmitResult => ({ ok: false, code, message });

class RuntimeImpl implements Runtime {
  private readonly sql: Sql;
  private readonly journal: JournalWriter;
  private readonly workers: WorkerSlot[] = [];
  private readonly zones = new Map<number, ZoneSlot>();
  private readonly zoneSubs = new Map<number, Set<Listener>>();
  private readonly userSubs = new Map<number, Set<Listener>>();
  private readonly allSubs = new Set<Listener>();
  private inflight = 0;
  private readonly inflightMax: number;
  private stopping = false;
  private nextReq = 1;
  private workerRestarts = 0;
  private clock: NodeJS.Timeout | null = null;
  private intervalsRefreshedAt = 0;
  private readonly now: () => number;
  private readonly snapshotEvery: number;
  private projector: Projector | null = null;
  /** The projector's zone list (read on every pass; addZone appends to it). */
  private readonly projectorZones: number[] = [];
  private readonly checkpointWaiters = new Map<string, { resolve: (c: { seq: number; state_hash: string }) => void; reject: (e: Error) => void }>();
  /** Snapshots received and waiting for their CHECKPOINT row to commit, over all zones. */
  private snapshotsWaiting = 0;

  constructor(private readonly opts: RuntimeOptions) {
    this.now = opts.now ?? Date.now;
    this.snapshotEvery = opts.snapshot_every ?? 100_000;
    this.sql = connectNoDelay(opts.database_url, { max: 3, application: 'kwx-runtime' });
    const batchMax = opts.journal_batch_max ?? 4096;
    const backlog = opts.backlog_max_rows ?? batchMax * 16;
    this.inflightMax = backlog;
    this.journal = new JournalWriter({
      url: opts.database_url,
      batch_max_rows: batchMax,
      batch_wait_ms: opts.journal_batch_wait_ms ?? 1,
      backlog_max_rows: backlog,
      slow_commit_ms: opts.slow_commit_ms ?? 1000,
      commit_timeout_ms: opts.commit_timeout_ms ?? 5000,
      lock_key: RUNTIME_LOCK_KEY,
      onFenced: (reason) => this.fenced(reason),
      log: opts.log,
      onStateChange: (s: JournalState, reason: string) => this.opts.log?.info('journal state', { state: s, reason }),
    });
  }

  // ------------------------------------------------------------------------------------------
  // Start-up

  async start(): Promise<void> {
    if (!existsSync(workerEntry())) throw new Error(`${workerEntry()} is missing: run \`npm run build\` first (workers run compiled JavaScript)`);
    // One runtime per database writes the journal: the journal's session takes the lock (a second
    // runtime waits for the first to go) and keeps it, re-taking it after an outage.
    await this.journal.open();
    const zoneRows = await this.loadZones();
    const n = Math.max(1, this.opts.workers ?? 2);
    for (let i = 0; i < n; i++) this.workers.push(this.spawnWorker(i));
    zoneRows.forEach((z, i) => this.zones.set(z.zone_id, this.newSlot(z, i % n)));
    await Promise.all([...this.zones.values()].map((z) => this.recoverZone(z)));
    if (this.opts.projections !== false) {
      this.projectorZones.push(...this.zones.keys());
      this.projector = startProjector(this.sql, {
        zones: this.projectorZones,
        log: this.opts.log,
        batch_timeout_ms: this.opts.projection_batch_timeout_ms ?? 10_000,
        connect: () => connectNoDelay(this.opts.database_url, { max: 1, application: 'kwx-projector', connect_timeout_s: 5 }),
      });
    }
    if (this.opts.lifecycle !== false) {
      await this.refreshIntervals();
      // Ready means tradable: intervals whose gate is already open are opened (and durable)
      // before start() returns, so the first order after start-up cannot race the clock.
      await this.tick();
      for (let i = 0; i < LIFECYCLE_CATCH_UP_POLLS && [...this.zones.values()].some((z) => z.lifecycle_pending.size > 0); i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      this.clock = setInterval(() => void this.tick(), this.opts.clock_tick_ms ?? 200);
      this.clock.unref();
    }
  }

  private newSlot(z: { zone_id: number; config: Command }, worker: number): ZoneSlot {
    if (z.zone_id > MAX_ZONE_ID) throw new Error(`zone id ${z.zone_id} is above ${MAX_ZONE_ID} (order ids are zone_id × 2^36 + seq)`);
    return {
      zone_id: z.zone_id,
      worker,
      status: 'RECOVERING',
      next_seq: 1,
      last_ts_ms: 0,
      last_result_seq: 0,
      since_checkpoint: 0,
      checkpoint_due: this.snapshotEvery,
      committed_seq: 0,
      snapshots_waiting: [],
      snapshot_received_seq: 0,
      last_command_ms: 0,
      has_gtt: false,
      waiters: new WaiterQueue(),
      engine_intervals: new Map(),
      intervals: new Map(),
      lifecycle_pending: new Set(),
      config: z.config,
      last_recovery: null,
    };
  }

  async addZone(zone_id: number): Promise<boolean> {
    const known = this.zones.get(zone_id);
    if (known !== undefined && known.status === 'FAILED') {
      // an earlier attempt could not configure or recover it: try again (from its journal)
      await this.recoverAdded(known);
      return true;
    }
    if (known !== undefined) return true;
    if (this.stopping) throw new Error('the runtime is stopping');
    if (this.opts.zones !== undefined && !this.opts.zones.includes(zone_id)) return false;
    const [row] = await this.loadZones(zone_id);
    if (row === undefined) throw new Error(`zone ${zone_id} is not in grid_zones`);
    if (this.zones.has(zone_id)) return true; // added by a concurrent call meanwhile
    const z = this.newSlot(row, this.zones.size % this.workers.length);
    this.zones.set(zone_id, z);
    // Same path as at start-up: an empty journal gets the zone's CONFIGURE_ZONE as its first row.
    await this.recoverAdded(z);
    this.projectorZones.push(zone_id);
    this.opts.log?.info('zone added', { zone_id, worker: z.worker });
    if (this.opts.lifecycle !== false && this.clock !== null) {
      await this.refreshIntervals();
      await this.tick();
      // as at start-up: the gates already open are open (and durable) when this returns
      for (let i = 0; i < LIFECYCLE_CATCH_UP_POLLS && z.lifecycle_pending.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  /** recoverZone for a zone added while running: a failure leaves it FAILED (refusing orders), so a retry recovers it again. */
  private async recoverAdded(z: ZoneSlot): Promise<void> {
    try {
      await this.recoverZone(z);
    } catch (err) {
      z.status = 'FAILED';
      throw err;
    }
  }

  /**
   * Another runtime took the journal lock while ours was lost: nothing sequenced here will ever
   * be written, so every waiting command is answered EXCHANGE_UNAVAILABLE (it is not in the
   * journal and never will be), new ones are refused, and the clock and projector stop.
   */
  private fenced(reason: string): void {
    this.opts.log?.error('runtime fenced: another runtime writes this journal; refusing all commands', { reason });
    if (this.clock) clearInterval(this.clock);
    this.clock = null;
    for (const z of this.zones.values()) {
      for (const resolve of z.waiters.takeAbove(0)) {
        this.inflight--;
        resolve(fail('EXCHANGE_UNAVAILABLE', 'exchange unavailable: another runtime took over the journal; the command was not executed'));
      }
      z.lifecycle_pending.clear();
    }
    const p = this.projector;
    this.projector = null;
    void p?.stop();
  }

  /** The zones this runtime runs (or just `only`), each with the CONFIGURE_ZONE its journal starts with. */
  private async loadZones(only?: number): Promise<{ zone_id: number; config: Command }[]> {
    const rows = await this.sql<
      {
        id: string;
        status: 'ACTIVE' | 'HALTED' | 'MAINTENANCE';
        lot_wh: string;
        price_band_min_ticks: string;
        price_band_max_ticks: string;
        min_order_wh: string;
        max_order_wh: string;
        max_open_orders_per_user: number;
      }[]
    >`select id, status, lot_wh, price_band_min_ticks, price_band_max_ticks, min_order_wh, max_order_wh, max_open_orders_per_user
      from grid_zones where ${only === undefined ? this.sql`true` : this.sql`id = ${only}`} order by id`;
    const wanted = this.opts.zones === undefined ? null : new Set(this.opts.zones);
    return rows
      .filter((r) => wanted === null || wanted.has(Number(r.id)))
      .map((r) => ({
        zone_id: Number(r.id),
        // A zone's first journal row configures its engine from grid_zones. Prices are in ticks
        // already (tick_size is the currency value of one tick), so the price step is 1 tick.
        config: {
          type: 'CONFIGURE_ZONE',
          ts_ms: 0,
          zone_id: Number(r.id),
          price_step_ticks: 1,
          lot_wh: Number(r.lot_wh),
          band_min_ticks: Number(r.price_band_min_ticks),
          band_max_ticks: Number(r.price_band_max_ticks),
          min_qty_wh: Number(r.min_order_wh),
          max_qty_wh: Number(r.max_order_wh),
          max_open_orders_per_user: r.max_open_orders_per_user,
          status: r.status,
        },
      }));
  }

  // ------------------------------------------------------------------------------------------
  // Workers

  private spawnWorker(index: number): WorkerSlot {
    // engine-port.ts reads engine_order_slots from workerData: it sizes every engine the worker creates
    const worker = new Worker(workerEntry(), { workerData: { engine_order_slots: this.opts.engine_order_slots ?? 0 } });
    const slot: WorkerSlot = { index, worker, alive: true, outbox: new CommandBatchWriter(64 * 1024), scheduled: false, requests: new Map() };
    worker.on('message', (m: FromWorker) => this.onWorkerMessage(slot, m));
    worker.on('error', (err) => this.opts.log?.error('zone worker failed', { worker: index, error: err.message }));
    worker.on('exit', (code) => {
      if (!slot.alive) return;
      slot.alive = false;
      if (!this.stopping) void this.restartWorker(slot, code);
    });
    return slot;
  }

  private request(slot: WorkerSlot, msg: ToWorker & { req: number }): Promise<FromWorker> {
    return new Promise((resolve) => {
      slot.requests.set(msg.req, resolve);
      slot.worker.postMessage(msg);
    });
  }

  private async recoverZone(z: ZoneSlot): Promise<void> {
    z.status = 'RECOVERING';
    const slot = this.workers[z.worker];
    const m = await this.request(slot, { t: 'recover', req: this.nextReq++, zone_id: z.zone_id, url: this.opts.database_url, from_scratch: false });
    if (m.t !== 'recovered') {
      z.status = 'FAILED';
      const msg = m.t === 'failed' ? `${m.code}: ${m.message}` : 'unexpected reply';
      this.opts.log?.error('zone recovery failed', { zone_id: z.zone_id, error: msg });
      throw new Error(`zone ${z.zone_id} recovery failed: ${msg}`);
    }
    z.next_seq = m.last_seq + 1;
    z.last_result_seq = m.last_seq;
    z.last_ts_ms = m.last_ts_ms;
    z.since_checkpoint = m.replayed_rows;
    z.checkpoint_due = this.checkpointSpacing(m.open_orders);
    z.committed_seq = m.last_seq;
    z.engine_intervals = new Map(m.intervals.map((iv: IntervalView) => [iv.interval_id, { closed: iv.closed }]));
    z.last_recovery = {
      snapshot_seq: m.snapshot_seq,
      replayed_rows: m.replayed_rows,
      checkpoints_verified: m.checkpoints_verified,
      state_hash: m.state_hash,
      duration_ms: m.duration_ms,
    };
    z.has_gtt = m.has_gtt;
    z.status = 'READY';
    this.opts.log?.info('zone recovered', {
      zone_id: z.zone_id,
      last_seq: m.last_seq,
      snapshot_seq: m.snapshot_seq,
      replayed_rows: m.replayed_rows,
      duration_ms: Math.round(m.duration_ms),
    });
    if (m.last_seq === 0 && z.config !== null) {
      const r = await this.sequence(z, z.config as SubmitCommand);
      if (!r.ok) throw new Error(`zone ${z.zone_id}: configuring failed: ${r.message}`);
    }
  }

  /** A worker died: fail its zones' pending commands, let the journal settle, restart from it. */
  private async restartWorker(dead: WorkerSlot, code: number): Promise<void> {
    this.workerRestarts++;
    const mine = [...this.zones.values()].filter((z) => z.worker === dead.index);
    this.opts.log?.error('zone worker died; restarting its zones from the journal', { worker: dead.index, exit_code: code, zones: mine.map((z) => z.zone_id) });
    dead.outbox.take();
    for (const r of dead.requests.values()) r({ t: 'failed', req: 0, zone_id: 0, code: 'WORKER_DIED', message: 'worker died' });
    dead.requests.clear();
    for (const z of mine) {
      z.status = 'RECOVERING';
      // Results up to last_result_seq are in the journal queue: they will commit and be answered.
      for (const resolve of z.waiters.takeAbove(z.last_result_seq)) {
        this.inflight--;
        resolve(fail('ZONE_UNAVAILABLE', `zone ${z.zone_id} is restarting after its worker failed; the command was not executed`));
      }
      z.lifecycle_pending.clear();
    }
    await this.journal.drain();
    // Every row the dead worker returned has committed now: a snapshot still waiting belongs to a
    // checkpoint that never reached the journal, and one never received died with the worker.
    for (const z of mine) {
      this.snapshotsWaiting -= z.snapshots_waiting.length;
      z.snapshots_waiting = [];
      for (const [key, w] of this.checkpointWaiters) {
        const [zone, seq] = key.split(':').map(Number);
        if (zone === z.zone_id && seq > z.snapshot_received_seq) {
          this.checkpointWaiters.delete(key);
          w.reject(new Error(`zone ${z.zone_id}: the worker died before the snapshot at seq ${seq} was made`));
        }
      }
    }
    if (this.stopping) return;
    this.workers[dead.index] = this.spawnWorker(dead.index);
    for (const z of mine) {
      try {
        await this.recoverZone(z);
      } catch (err) {
        this.opts.log?.error('zone restart failed', { zone_id: z.zone_id, error: (err as Error).message });
      }
    }
  }

  private onWorkerMessage(slot: WorkerSlot, m: FromWorker): void {
    if (m.t === 'result') {
      const zone_last: number[] = [];
      for (let x = 0; x < m.index.length; x += ROW_FIELDS) {
        const zone_id = m.index[x];
        const seq = m.index[x + 1];
        const z = this.zones.get(zone_id);
        if (z !== undefined) z.last_result_seq = seq;
        let k = 0;
        while (k < zone_last.length && zone_last[k] !== zone_id) k += 2;
        zone_last[k] = zone_id;
        zone_last[k + 1] = seq;
      }
      this.journal.append({ bytes: m.bytes, rows: m.rows, zone_id: m.first_zone_id, first_seq: m.first_seq, zone_last }, () => this.release(m));
      return;
    }
    if (m.t === 'snapshot') {
      this.onSnapshot(m);
      return;
    }
    const r = slot.requests.get(m.req);
    if (r !== undefined) {
      slot.requests.delete(m.req);
      r(m);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Sequencer

  submit(zone_id: number, cmd: SubmitCommand): Promise<SubmitResult> {
    if (this.stopping) return Promise.resolve(fail('SHUTTING_DOWN', 'the exchange is shutting down'));
    const z = this.zones.get(zone_id);
    if (z === undefined) return Promise.resolve(fail('UNKNOWN_ZONE', `zone ${zone_id} is not run here`));
    if ((cmd as { type: string }).type === 'CHECKPOINT') return Promise.resolve(fail('INVALID_COMMAND', 'CHECKPOINT is internal'));
    if ('zone_id' in cmd && cmd.zone_id !== undefined && cmd.zone_id !== zone_id) {
      return Promise.resolve(fail('INVALID_COMMAND', `command names zone ${String(cmd.zone_id)} but was sent to zone ${zone_id}`));
    }
    return this.sequence(z, cmd);
  }

  private sequence(z: ZoneSlot, cmd: SubmitCommand | { type: 'CHECKPOINT' }): Promise<SubmitResult> {
    if (z.status !== 'READY') {
      return Promise.resolve(fail('ZONE_UNAVAILABLE', `zone ${z.zone_id} is ${z.status === 'FAILED' ? 'failed' : 'restarting'}; retry shortly`));
    }
    if (!this.journal.canAccept() || this.inflight >= this.inflightMax) {
      const st = this.journal.state;
      const why = st === 'FENCED' ? 'another runtime took over the journal' : st !== 'AVAILABLE' ? 'the journal database is unreachable or slow' : 'the journal backlog is full';
      return Promise.resolve(fail('EXCHANGE_UNAVAILABLE', `exchange unavailable: ${why}; nothing was executed, retry later`));
    }
    const seq = z.next_seq++;
    // Time never goes backwards within a zone (the engine's expiry depends on it).
    const ts_ms = Math.max(z.last_ts_ms, this.now());
    z.last_ts_ms = ts_ms;
    z.last_command_ms = ts_ms;
    const slot = this.workers[z.worker];
    if (cmd.type === 'CHECKPOINT') slot.outbox.checkpoint(z.zone_id, seq, ts_ms);
    else if (cmd.type === 'PLACE') {
      const order_id = orderIdFor(z.zone_id, seq);
      // The fast path encodes the submitted object as it is (no copy); any other shape is
      // journaled whole, as the engine sees it.
      const item = cmd.zone_id === z.zone_id ? cmd : withFields(cmd, { ts_ms, order_id });
      slot.outbox.command(z.zone_id, seq, ts_ms, item as unknown as Record<string, unknown>, order_id);
      if (cmd.expire_at_ms !== undefined) z.has_gtt = true;
    } else {
      slot.outbox.command(z.zone_id, seq, ts_ms, withFields(cmd, { ts_ms }) as unknown as Record<string, unknown>, 0);
    }
    this.inflight++;
    const p = new Promise<SubmitResult>(grabResolve);
    z.waiters.push(seq, grabbed);
    if (++z.since_checkpoint >= z.checkpoint_due && cmd.type !== 'CHECKPOINT') {
      z.since_checkpoint = 0;
      void this.sequence(z, { type: 'CHECKPOINT' });
    }
    if (slot.outbox.rows >= WORKER_BATCH_MAX) this.flush(slot);
    else if (!slot.scheduled) {
      slot.scheduled = true;
      setImmediate(() => this.flush(slot));
    }
    return p;
  }

  private flush(slot: WorkerSlot): void {
    slot.scheduled = false;
    if (slot.outbox.rows === 0 || !slot.alive) return;
    const rows = slot.outbox.rows;
    const bytes = slot.outbox.take();
    slot.worker.postMessage({ t: 'batch', bytes, rows } satisfies ToWorker, [bytes.buffer as ArrayBuffer]);
  }

  /** Runs after the batch holding these results has committed: acks, subscriptions, snapshots. */
  private release(m: Extract<FromWorker, { t: 'result' }>): void {
    const ix = m.index;
    for (let x = 0; x < ix.length; x += ROW_FIELDS) {
      const zone_id = ix[x];
      const seq = ix[x + 1];
      const ts_ms = ix[x + 4];
      const len = ix[x + 3];
      const z = this.zones.get(zone_id);
      if (z === undefined) continue;
      z.committed_seq = seq;
      const events = len < 0 ? [] : decodeEventsAt(m.bytes, ix[x + 5], zone_id, ts_ms);
      const stale = z.waiters.takeBelow(seq);
      if (stale.length > 0) {
        this.opts.log?.error('commands without a journaled result (answered EXCHANGE_UNAVAILABLE)', { zone_id, before_seq: seq, count: stale.length });
        for (const f of stale) {
          this.inflight--;
          f(fail('EXCHANGE_UNAVAILABLE', 'exchange unavailable: the command has no journaled result; it was not executed'));
        }
      }
      const resolve = z.waiters.take(seq);
      if (resolve !== undefined) {
        this.inflight--;
        resolve(ix[x + 6] === 1 ? { ok: true, zone_id, seq, ts_ms, order_id: orderIdFor(zone_id, seq), events } : { ok: true, zone_id, seq, ts_ms, events });
      }
      if (events.length > 0) this.publish(z, zone_id, seq, ts_ms, events);
    }
    if (this.snapshotsWaiting > 0) {
      for (let x = 0; x < ix.length; x += ROW_FIELDS) {
        const z = this.zones.get(ix[x]);
        if (z !== undefined && z.snapshots_waiting.length > 0) this.storeCommittedSnapshots(z);
      }
    }
  }

  /**
   * A checkpoint's snapshot from the worker (encoded after the batch that holds its CHECKPOINT
   * row): stored once that row has committed, so engine_snapshots never holds a state the
   * journal does not.
   */
  private onSnapshot(s: SnapshotOut): void {
    const z = this.zones.get(s.zone_id);
    if (z === undefined) return;
    z.checkpoint_due = this.checkpointSpacing(s.open_orders);
    z.snapshot_received_seq = Math.max(z.snapshot_received_seq, s.seq);
    z.snapshots_waiting.push(s);
    this.snapshotsWaiting++;
    this.storeCommittedSnapshots(z);
  }

  private storeCommittedSnapshots(z: ZoneSlot): void {
    while (z.snapshots_waiting.length > 0 && z.snapshots_waiting[0].seq <= z.committed_seq) {
      const s = z.snapshots_waiting.shift() as SnapshotOut;
      this.snapshotsWaiting--;
      void this.saveSnapshot(s.zone_id, s.seq, s.state, s.state_hash).then((saved) => {
        const key = `${s.zone_id}:${s.seq}`;
        const w = this.checkpointWaiters.get(key);
        this.checkpointWaiters.delete(key);
        if (saved) w?.resolve({ seq: s.seq, state_hash: s.state_hash });
        else w?.reject(new Error(`the snapshot of zone ${s.zone_id} at seq ${s.seq} was not saved`));
      });
    }
  }

  /** Lifecycle bookkeeping for every committed row; the subscribers' object only when someone listens. */
  private publish(z: ZoneSlot, zone_id: number, seq: number, ts_ms: number, events: EngineEvent[]): void {
    for (let i = 0; i < events.length; i++) this.observeLifecycle(z, seq, ts_ms, events[i]);
    if (this.allSubs.size === 0 && this.userSubs.size === 0 && !this.zoneSubs.has(zone_id)) return;
    const c: CommittedEvents = { zone_id, seq, ts_ms, events };
    for (const fn of this.allSubs) fn(c);
    const zs = this.zoneSubs.get(c.zone_id);
    if (zs !== undefined) for (const fn of zs) fn(c);
    if (this.userSubs.size > 0) {
      const byUser = new Map<number, EngineEvent[]>();
      for (const ev of c.events) {
        for (const u of usersOf(ev)) {
          let list = byUser.get(u);
          if (list === undefined) byUser.set(u, (list = []));
          list.push(ev);
        }
      }
      for (const [u, events] of byUser) {
        const subs = this.userSubs.get(u);
        if (subs !== undefined) for (const fn of subs) fn({ zone_id: c.zone_id, seq: c.seq, ts_ms: c.ts_ms, events });
      }
    }
  }

  /**
   * Commands until a zone's next checkpoint. A checkpoint (hash + snapshot) costs in proportion
   * to the open orders, so on a deep book they come further apart: the work per command stays
   * bounded, and recovery replays at most this many commands after the latest snapshot.
   */
  private checkpointSpacing(open_orders: number): number {
    return Math.max(this.snapshotEvery, SNAPSHOT_OPEN_FACTOR * open_orders);
  }

  /** Whether it was saved (a failure is logged: recovery then replays from an older snapshot). */
  private async saveSnapshot(zone_id: number, seq: number, state: Uint8Array, state_hash: string): Promise<boolean> {
    try {
      // Binary COPY (a bytea parameter would travel as hex); a row already at this seq (the same
      // state: a seq is never reused) is replaced, as the insert … on conflict do nothing kept it.
      const save = this.sql.begin(async (tx) => {
        await tx`delete from engine_snapshots where zone_id = ${zone_id} and seq = ${seq}`;
        const w = await tx`copy engine_snapshots (zone_id, seq, state, state_hash) from stdin (format binary)`.writable();
        await new Promise<void>((resolve, reject) => {
          w.on('error', reject);
          w.on('finish', resolve);
          // in 64 KB CopyData messages: postgres.js copies each write into a message buffer of its own
          for (const chunk of snapshotCopyChunks(zone_id, seq, state, state_hash)) {
            for (let at = 0; at < chunk.length; at += SNAPSHOT_WRITE_BYTES) w.write(chunk.subarray(at, Math.min(chunk.length, at + SNAPSHOT_WRITE_BYTES)));
          }
          w.end();
        });
        // Keep the two latest snapshots of the zone.
        await tx`delete from engine_snapshots where zone_id = ${zone_id} and seq < (
          select min(seq) from (select seq from engine_snapshots where zone_id = ${zone_id} order by seq desc limit 2) s)`;
      });
      // postgres.js can leave a query on a dead connection pending forever: a checkpoint() waiting
      // for this save is answered within the bound either way
      await withDeadline(save, SNAPSHOT_SAVE_TIMEOUT_MS, `snapshot save took longer than ${SNAPSHOT_SAVE_TIMEOUT_MS} ms`);
      return true;
    } catch (err) {
      this.opts.log?.warn('snapshot not saved (recovery will replay more journal)', { zone_id, seq, error: (err as Error).message });
      return false;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Delivery-interval lifecycle, driven by the sequencer's clock

  private async refreshIntervals(): Promise<void> {
    this.intervalsRefreshedAt = this.now();
    const ids = [...this.zones.keys()];
    const ahead = this.opts.schedule_intervals_ahead_ms;
    if (ahead !== undefined && ids.length > 0) {
      const created = await scheduleIntervals(this.sql, Math.floor(this.now()), ahead, ids);
      if (created > 0) this.opts.log?.info('delivery intervals scheduled', { created, zones: ids.length });
    }
    const rows = await this.sql<{ id: string; zone_id: string; gate_opens_at: Date; gate_closes_at: Date; capacity_wh: string; status: string }[]>`
      select id, zone_id, gate_opens_at, gate_closes_at, capacity_wh, status from delivery_intervals
      where zone_id = any(${ids}::bigint[]) and status in ('SCHEDULED', 'OPEN')`;
    for (const r of rows) {
      const z = this.zones.get(Number(r.zone_id));
      if (z === undefined) continue;
      z.intervals.set(Number(r.id), {
        id: Number(r.id),
        gate_opens_at_ms: r.gate_opens_at.getTime(),
        gate_closes_at_ms: r.gate_closes_at.getTime(),
        capacity_wh: Number(r.capacity_wh),
        status: r.status,
      });
    }
  }

  private ticking = false;
  private async tick(): Promise<void> {
    if (this.ticking || this.stopping) return;
    this.ticking = true;
    try {
      const now = this.now();
      if (now - this.intervalsRefreshedAt >= (this.opts.intervals_refresh_ms ?? 5000)) await this.refreshIntervals();
      for (const z of this.zones.values()) {
        if (z.status !== 'READY') continue;
        for (const iv of z.intervals.values()) this.driveInterval(z, iv, now);
        if (z.has_gtt && now - z.last_command_ms >= (this.opts.expire_every_ms ?? 1000)) {
          void this.sequence(z, { type: 'EXPIRE_DUE' });
        }
      }
    } catch (err) {
      this.opts.log?.warn('lifecycle tick failed', { error: (err as Error).message });
    } finally {
      this.ticking = false;
    }
  }

  private driveInterval(z: ZoneSlot, iv: IntervalRow, now: number): void {
    const inEngine = z.engine_intervals.get(iv.id);
    if (inEngine === undefined && now >= iv.gate_opens_at_ms && !z.lifecycle_pending.has(`o${iv.id}`)) {
      // Opened even when the gate is already past: the next tick closes it, which hands it off.
      z.lifecycle_pending.add(`o${iv.id}`);
      void this.sequence(z, { type: 'OPEN_INTERVAL', interval_id: iv.id, capacity_wh: iv.capacity_wh }).then((r) => {
        z.lifecycle_pending.delete(`o${iv.id}`);
        if (r.ok && r.events.some((e) => e.type === 'REJECTED')) z.engine_intervals.set(iv.id, { closed: false });
      });
    } else if (inEngine !== undefined && !inEngine.closed && now >= iv.gate_closes_at_ms && !z.lifecycle_pending.has(`c${iv.id}`)) {
      z.lifecycle_pending.add(`c${iv.id}`);
      void this.sequence(z, { type: 'GATE_CLOSE', interval_id: iv.id }).then(() => z.lifecycle_pending.delete(`c${iv.id}`));
    } else if (inEngine !== undefined && inEngine.closed) {
      z.intervals.delete(iv.id);
      if (iv.status !== 'CLOSED') void this.setIntervalStatus(iv.id, 'CLOSED');
    } else if (inEngine !== undefined && iv.status === 'SCHEDULED') {
      iv.status = 'OPEN';
      void this.setIntervalStatus(iv.id, 'OPEN');
    }
  }

  /** Keeps the engine's view of intervals current from committed events and hands off closures. */
  private observeLifecycle(z: ZoneSlot, seq: number, ts_ms: number, ev: EngineEvent): void {
    if (ev.type === 'INTERVAL_OPENED') {
      z.engine_intervals.set(ev.interval_id, { closed: false });
    } else if (ev.type === 'GATE_CLOSED') {
      z.engine_intervals.set(ev.interval_id, { closed: true });
      const closed: ClosedInterval = { zone_id: z.zone_id, interval_id: ev.interval_id, seq, closed_at_ms: ts_ms, expired_count: ev.expired_count };
      void this.setIntervalStatus(ev.interval_id, 'CLOSED');
      try {
        this.opts.onIntervalClosed?.(closed);
      } catch (err) {
        this.opts.log?.error('interval hand-off callback failed', { ...closed, error: (err as Error).message });
      }
    }
  }

  private async setIntervalStatus(id: number, status: 'OPEN' | 'CLOSED'): Promise<void> {
    try {
      await this.sql`update delivery_intervals set status = ${status}
        where id = ${id} and status in ${status === 'OPEN' ? this.sql(['SCHEDULED']) : this.sql(['SCHEDULED', 'OPEN'])}`;
    } catch (err) {
      this.opts.log?.warn('interval status not updated (retried on the next tick)', { interval_id: id, error: (err as Error).message });
    }
  }

  // ------------------------------------------------------------------------------------------
  // Subscriptions, status, control

  subscribeZone(zone_id: number, fn: Listener): () => void {
    return addSub(this.zoneSubs, zone_id, fn);
  }

  subscribeUser(user_id: number, fn: Listener): () => void {
    return addSub(this.userSubs, user_id, fn);
  }

  subscribeAll(fn: Listener): () => void {
    this.allSubs.add(fn);
    return () => this.allSubs.delete(fn);
  }

  async checkpoint(zone_id: number): Promise<{ seq: number; state_hash: string }> {
    const z = this.zones.get(zone_id);
    if (z === undefined) throw new Error(`zone ${zone_id} is not run here`);
    const key = `${zone_id}:${z.next_seq}`;
    const saved = new Promise<{ seq: number; state_hash: string }>((resolve, reject) => this.checkpointWaiters.set(key, { resolve, reject }));
    const r = await this.sequence(z, { type: 'CHECKPOINT' });
    if (!r.ok) {
      this.checkpointWaiters.delete(key);
      throw new Error(`${r.code}: ${r.message}`);
    }
    z.since_checkpoint = 0;
    return saved;
  }

  async dump(zone_id: number): Promise<{ state: EngineSnapshot; state_hash: string }> {
    const z = this.zones.get(zone_id);
    if (z === undefined) throw new Error(`zone ${zone_id} is not run here`);
    const m = await this.request(this.workers[z.worker], { t: 'dump', req: this.nextReq++, zone_id });
    if (m.t !== 'dumped') throw new Error(`dump of zone ${zone_id} failed`);
    return { state: m.state, state_hash: m.state_hash };
  }

  status(): RuntimeStatus {
    const zones: ZoneStatusView[] = [...this.zones.values()].map((z) => ({
      zone_id: z.zone_id,
      status: z.status,
      last_seq: z.next_seq - 1,
      worker: z.worker,
      last_recovery: z.last_recovery,
    }));
    return {
      available: this.journal.canAccept() && !this.stopping,
      journal: this.journal.state,
      journal_locked: this.journal.locked,
      backlog_rows: this.journal.backlogRows,
      inflight_commands: this.inflight,
      zones,
      worker_restarts: this.workerRestarts,
      journal_stats: { ...this.journal.stats },
    };
  }

  async syncProjections(): Promise<void> {
    await this.journal.drain();
    if (this.projector !== null) await this.projector.sync();
    else await projectOnce(this.sql, [...this.zones.keys()]);
  }

  crashWorker(index: number): void {
    this.workers[index]?.worker.postMessage({ t: 'crash' } satisfies ToWorker);
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.clock) clearInterval(this.clock);
    for (const w of this.workers) this.flush(w);
    // Wait until every sequenced command has come back and committed.
    for (let i = 0; i < 500 && this.inflight > 0; i++) await new Promise((r) => setTimeout(r, 10));
    await this.journal.close();
    await this.projector?.stop();
    for (const w of this.workers) {
      w.alive = false;
      await w.worker.terminate();
    }
    await this.sql.end({ timeout: 2 });
  }
}

function addSub(map: Map<number, Set<Listener>>, key: number, fn: Listener): () => void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(fn);
  return () => {
    set.delete(fn);
    if (set.size === 0) map.delete(key);
  };
}

/** Users an event concerns (both sides of a fill). */
function usersOf(ev: EngineEvent): number[] {
  if (ev.type === 'FILL') return ev.maker_user_id === ev.taker_user_id ? [ev.maker_user_id] : [ev.maker_user_id, ev.taker_user_id];
  if ('user_id' in ev && typeof ev.user_id === 'number' && ev.user_id > 0) return [ev.user_id];
  return [];
}
