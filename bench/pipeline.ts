// `npm run bench -- pipeline [--orders N (1,000,000)] [--warmup N (300,000)] [--rate R] [--workers W] [--batch N] [--batch-wait MS] [--snapshot-every N (100,000; 0 = none)] [--profile FILE] [--latency-only]`
// Durable throughput and ack latency through sequencer → zone worker → journal (group commit) →
// ack, recovery time of a 1,000,000-row journal, and the raw ceiling: the same journal rows
// written by plain batched COPY with no engine. Also measures the worker transport options.
// Uses a scratch database on DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { serialize as v8Serialize, deserialize as v8Deserialize } from 'node:v8';
import hdr from 'hdr-histogram-js';
import type { Sql } from '../schema/db.js';
import { migrate } from '../schema/migrate.js';
import { printTable, writeResults } from './report.js';
import { startProfile } from './profile.js';
import { startRuntime, type Runtime } from '../engine/runtime/runtime.js';
import { recoverZone } from '../engine/runtime/recovery.js';
import { connectNoDelay } from '../engine/runtime/pg.js';
import { ByteReader, CommandBatchWriter, COPY_HEADER, COPY_TRAILER, CopyJournalReader, CopyTupleWriter, decodeEvents, decodeEventsAt, encodeCommandPayload } from '../engine/runtime/codec.js';
import type { SubmitCommand } from '../engine/runtime/types.js';
import type { Command, EngineEvent } from '../engine/core/types.js';
import { mulberry32 as rng } from './prng.js';

function arg(args: string[], name: string, def: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
}


interface Market {
  zones: number[];
  intervals: number[];
  users: number[];
}

async function seed(sql: Sql, zones: number, users: number): Promise<Market> {
  const m: Market = { zones: [], intervals: [], users: [] };
  const now = Date.now();
  for (let i = 0; i < zones; i++) {
    const [z] = await sql<{ id: string }[]>`
      insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh, max_open_orders_per_user)
      values (${`BENCH${i}`}, ${`bench ${i}`}, 'EUR', 0.0001, 1000000000, 1, 1000000, 1000000000, 10000000) returning id`;
    m.zones.push(Number(z.id));
    const [iv] = await sql<{ id: string }[]>`
      insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
      values (${Number(z.id)}, ${new Date(now + 2 * 86_400_000)}, ${new Date(now + 2 * 86_400_000 + 900_000)}, ${new Date(now - 60_000)}, ${new Date(now + 86_400_000)}, ${1e15})
      returning id`;
    m.intervals.push(Number(iv.id));
  }
  for (let i = 0; i < users; i++) {
    const [u] = await sql<{ id: string }[]>`insert into users (email, name, role) values (${`b${i}@kwx.bench`}, ${`bench ${i}`}, 'PROSUMER') returning id`;
    m.users.push(Number(u.id));
  }
  return m;
}

/** A seeded stream of orders, made one at a time as the driver sends them. */
interface OrderStream {
  readonly length: number;
  next(): { zone: number; cmd: SubmitCommand };
}

/**
 * Limit orders around a slowly moving mid, ~20% crossing, sizes 1–100 Wh; every 4th order an IOC.
 * Made on demand (not pre-generated): hundreds of thousands of live order objects would make
 * every major GC of the main thread, which runs the sequencer, scan them.
 */
function makeOrders(m: Market, n: number, seedNo: number): OrderStream {
  const r = rng(seedNo);
  let mid = 10_000;
  let i = 0;
  return {
    length: n,
    next() {
      if (i >= n) throw new Error('order stream exhausted');
      if (i % 1000 === 0) mid += Math.floor(r() * 21) - 10;
      const zi = i % m.zones.length;
      const buy = r() < 0.5;
      const cross = r() < 0.2;
      const off = cross ? -Math.floor(r() * 5) : 1 + Math.floor(r() * 50);
      const o = {
        zone: m.zones[zi],
        cmd: {
          type: 'PLACE',
          user_id: m.users[Math.floor(r() * m.users.length)],
          client_order_id: `c${i}`,
          zone_id: m.zones[zi],
          interval_id: m.intervals[zi],
          side: buy ? 'BUY' : 'SELL',
          source: buy ? 'ANY' : 'SOLAR',
          order_type: i % 4 === 3 ? 'IOC' : 'LIMIT',
          price_ticks: buy ? mid - off : mid + off,
          qty_wh: 1 + Math.floor(r() * 100),
          stp: 'CANCEL_OLDEST',
        } satisfies SubmitCommand,
      };
      i++;
      return o;
    },
  };
}

async function waitOpen(rt: Runtime, m: Market): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const states = await Promise.all(m.zones.map((z) => rt.dump(z)));
    if (states.every((s, k) => s.state.intervals.some((iv) => iv.interval_id === m.intervals[k]))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('intervals did not open');
}

/** CPU seconds (user + system) of a thread or process from /proc (Linux); NaN elsewhere. */
function procCpuS(path: string): number {
  try {
    const stat = readFileSync(path, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

interface CpuMark {
  process_us: number;
  main_s: number;
  pg_s: number;
}

/** CPU used so far: this process (every thread), its main thread, and the journal's PostgreSQL backend. */
function cpuMark(pgPid: number): CpuMark {
  const u = process.cpuUsage();
  return { process_us: u.user + u.system, main_s: procCpuS(`/proc/self/task/${process.pid}/stat`), pg_s: pgPid > 0 ? procCpuS(`/proc/${pgPid}/stat`) : NaN };
}

/** µs of CPU per order between two marks. */
function cpuPerOrder(a: CpuMark, b: CpuMark, orders: number): { process_us: number; main_us: number; other_threads_us: number; pg_backend_us: number } {
  const proc = (b.process_us - a.process_us) / orders;
  const main = ((b.main_s - a.main_s) * 1e6) / orders;
  return { process_us: proc, main_us: main, other_threads_us: proc - main, pg_backend_us: ((b.pg_s - a.pg_s) * 1e6) / orders };
}

/** Closed loop with a bounded window: the sustained durable rate. */
async function saturate(rt: Runtime, orders: OrderStream, window: number): Promise<{ per_s: number; errors: number; events: number }> {
  let next = 0;
  let errors = 0;
  let events = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    let done = 0;
    const one = (): void => {
      if (next >= orders.length) return;
      next++;
      const o = orders.next();
      void rt.submit(o.zone, o.cmd).then((res) => {
        if (!res.ok) errors++;
        else events += res.events.length;
        if (++done === orders.length) resolve();
        else one();
      });
    };
    for (let i = 0; i < window; i++) one();
  });
  return { per_s: orders.length / ((performance.now() - t0) / 1000), errors, events };
}

/** Open loop at a fixed rate; latency from the intended send time (no coordinated omission). */
async function fixedRate(rt: Runtime, orders: OrderStream, rate: number, windows?: { start_ms: number; max_us: Float64Array; steady: hdr.Histogram }): Promise<{ hist: hdr.Histogram; per_s: number; errors: number }> {
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let next = 0;
  let done = 0;
  let errors = 0;
  const t0 = performance.now();
  if (windows !== undefined) windows.start_ms = Date.now();
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      const due = Math.min(orders.length, Math.floor(((performance.now() - t0) / 1000) * rate));
      while (next < due) {
        const intended = t0 + (next / rate) * 1000;
        next++;
        const o = orders.next();
        void rt.submit(o.zone, o.cmd).then((res) => {
          if (!res.ok) errors++;
          const us = Math.max(1, Math.round((performance.now() - intended) * 1000));
          hist.recordValue(us);
          if (windows !== undefined) {
            const w = Math.floor((intended - t0) / 10);
            if (w < windows.max_us.length && windows.max_us[w] < us) windows.max_us[w] = us;
            if (intended - t0 >= 1000) windows.steady.recordValue(us);
          }
          if (++done === orders.length) resolve();
        });
      }
      if (next < orders.length) setTimeout(pump, 1);
    };
    pump();
  });
  return { hist, per_s: orders.length / ((performance.now() - t0) / 1000), errors };
}

/**
 * The same journal rows, written by plain batched COPY (one COPY + commit per batch, no engine)
 * into a copy of engine_journal: `like … including all` (columns, primary key, checks) — 'none';
 * with 'trigger0016', the zone check of migration 0016 (an AFTER … FOR EACH STATEMENT trigger over
 * the transition table, dropped by 0017; re-created here for comparison); with 'partitioned', the
 * journal's shape since migration 0017 (LIST-partitioned by zone_id, a partition for the zone and
 * the refusing default partition, so a row for an unknown zone has nowhere to go).
 */
async function rawCopy(url: string, sql: Sql, zone: number, batch: number, check: 'none' | 'trigger0016' | 'partitioned'): Promise<{ rows: number; per_s: number; pg_us_per_row: number }> {
  if (check === 'partitioned') {
    await sql`create table journal_raw (like engine_journal including all) partition by list (zone_id)`;
    await sql.unsafe(`create table journal_raw_z partition of journal_raw for values in (${zone})`);
    await sql`create table journal_raw_no_zone partition of journal_raw (constraint journal_raw_no_zone_refused check (false)) default`;
    await sql`create trigger journal_raw_no_zone before insert on journal_raw_no_zone for each row execute function engine_journal_no_zone()`;
  } else {
    await sql`create table journal_raw (like engine_journal including all)`;
  }
  if (check === 'trigger0016') {
    await sql`create or replace function bench_journal_zones_exist() returns trigger language plpgsql as $$
      declare z bigint;
      begin
        for z in select distinct zone_id from new_rows loop
          perform 1 from grid_zones where id = z for key share;
          if not found then
            raise exception 'engine_journal: zone % does not exist in grid_zones', z using errcode = 'foreign_key_violation';
          end if;
        end loop;
        return null;
      end $$`;
    await sql`create trigger journal_raw_zones_exist after insert on journal_raw
      referencing new table as new_rows for each statement execute function bench_journal_zones_exist()`;
  }
  const tuples: Uint8Array[] = [];
  let rows = 0;
  const w = new CopyTupleWriter(1 << 22);
  const reader = new CopyJournalReader((row) => {
    w.append(row.zone_id, row.seq, row.kind, row.payload, row.ts_ms);
    if (w.rows === batch) tuples.push(w.take());
    rows++;
  });
  // A connection of its own: postgres.js leaves a connection unusable after a COPY TO stream.
  const out = connectNoDelay(url, { max: 1 });
  const stream = await out.unsafe(`copy (select zone_id, seq, kind, payload, ts from engine_journal where zone_id = ${zone} order by seq) to stdout (format binary)`).readable();
  for await (const chunk of stream) reader.push(chunk as Uint8Array);
  await out.end({ timeout: 0 });
  if (w.rows > 0) tuples.push(w.take());
  const bodies = tuples.map((t) => Buffer.concat([COPY_HEADER, t, COPY_TRAILER]));
  const conn = connectNoDelay(url, { max: 1, application: 'kwx-bench-raw' });
  const [{ pid }] = await conn<{ pid: number }[]>`select pg_backend_pid() as pid`;
  const cpu0 = procCpuS(`/proc/${pid}/stat`);
  const t0 = performance.now();
  for (const body of bodies) {
    await new Promise<void>((resolve, reject) => {
      conn`copy journal_raw (zone_id, seq, kind, payload, ts) from stdin (format binary)`.writable().then((s) => {
        s.on('error', reject);
        s.on('finish', resolve);
        s.end(body);
      }, reject);
    });
  }
  const per_s = rows / ((performance.now() - t0) / 1000);
  const pg_us_per_row = ((procCpuS(`/proc/${pid}/stat`) - cpu0) * 1e6) / rows;
  await conn.end({ timeout: 1 });
  await sql`drop table journal_raw`;
  if (check === 'trigger0016') await sql`drop function bench_journal_zones_exist()`;
  return { rows, per_s, pg_us_per_row };
}

/** Cost per order of moving a batch of results between threads, by transport (in-thread, both ends). */
function transport(): { name: string; ns_per_order: number }[] {
  const N = 1000;
  const events: EngineEvent[][] = [];
  const cmds: Command[] = [];
  for (let i = 0; i < N; i++) {
    const cmd = { type: 'PLACE', ts_ms: 1, order_id: i + 1, user_id: 7, client_order_id: `c${i}`, zone_id: 1, interval_id: 1, side: 'BUY', source: 'ANY', order_type: 'LIMIT', price_ticks: 100, qty_wh: 5 } as Command;
    cmds.push(cmd);
    events.push([
      { type: 'ACCEPTED', event_seq: i, zone_id: 1, ts_ms: 1, order_id: i + 1, user_id: 7, client_order_id: `c${i}`, interval_id: 1, side: 'BUY', source: 'ANY', order_type: 'LIMIT', stp: 'CANCEL_NEWEST', price_ticks: 100, qty_wh: 5, seq: i, expire_at_ms: 0 },
      { type: 'BOOK_LEVEL', event_seq: i + 1, zone_id: 1, ts_ms: 1, interval_id: 1, side: 'BUY', source: 'ANY', price_ticks: 100, qty_wh: 5, source_qty_wh: 5, source_order_count: 1 },
    ]);
  }
  const time = (f: () => void): number => {
    for (let i = 0; i < 20; i++) f();
    const t0 = process.hrtime.bigint();
    const R = 200;
    for (let i = 0; i < R; i++) f();
    return Number(process.hrtime.bigint() - t0) / R / N;
  };
  const payloads = cmds.map((c, i) => encodeCommandPayload(c, events[i]));
  // The path the runtime takes: the sequencer encodes the command once (CommandBatchWriter), the
  // worker decodes it for the engine and appends its bytes + the events to the COPY tuples, the
  // main thread decodes the events from their offset.
  const batch = new CommandBatchWriter(1 << 20);
  const bytes = (): Uint8Array => {
    cmds.forEach((c, i) => batch.command(1, i + 1, 1, c as unknown as Record<string, unknown>, i + 1));
    return batch.take();
  };
  const input = bytes();
  const reader = new ByteReader();
  const out = new CopyTupleWriter(1 << 20);
  const eventsAt: number[] = [];
  const workerSide = (): void => {
    reader.reset(input, 0);
    eventsAt.length = 0;
    for (let i = 0; i < N; i++) {
      const z = reader.varint();
      const seq = reader.varint();
      const ts = reader.float64();
      reader.byte();
      const from = reader.o;
      reader.command(z, ts);
      out.appendEncodedCommand(z, seq, ts, input, from, reader.o, events[i]);
      eventsAt.push(out.eventsAt);
    }
  };
  workerSide();
  const tuples = out.take();
  return [
    { name: 'structured clone (v8 serialize+deserialize) of events', ns_per_order: time(() => v8Deserialize(v8Serialize(events))) },
    { name: 'structured clone (v8 serialize+deserialize) of commands', ns_per_order: time(() => v8Deserialize(v8Serialize(cmds))) },
    { name: 'sequencer: encode command into the batch buffer (main)', ns_per_order: time(() => void bytes()) },
    { name: 'worker: decode command + append journal row with events', ns_per_order: time(() => (workerSide(), void out.take())) },
    { name: 'ack: decode events from the journal bytes (main)', ns_per_order: time(() => eventsAt.forEach((at) => decodeEventsAt(tuples, at, 1, 1))) },
    { name: 'decode events of a whole payload (projector, ledger sync)', ns_per_order: time(() => payloads.forEach((p) => decodeEvents(p, 1, 1))) },
  ];
}

function roundAll<T extends Record<string, number>>(o: T): T {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v * 100) / 100])) as T;
}

export async function run(args: string[]): Promise<void> {
  const server = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const orders_n = arg(args, 'orders', 1_000_000);
  const warmup_n = arg(args, 'warmup', 300_000);
  const rate = arg(args, 'rate', 100_000);
  const workers = arg(args, 'workers', 1);
  const recovery_events = arg(args, 'recovery-events', 1_000_000);
  const batch = arg(args, 'batch', 4096);
  const batchWait = arg(args, 'batch-wait', 1);
  const window = arg(args, 'window', 16_384);
  // Checkpoints (state hash in the journal + snapshot) every N commands per zone, as the runtime
  // does by default (100,000); 0 = none (the bench ran without them until 2026-12-03).
  const snapshotEvery = arg(args, 'snapshot-every', 100_000);
  const name = `kwx_bench_pipeline_${randomBytes(4).toString('hex')}`;
  // --socket-dir DIR: the runtime and the raw COPY reach the server over its unix socket in DIR
  // (engine/runtime/pg.ts reads ?host=DIR); a DATABASE_URL with ?host=DIR does the same.
  // --profile FILE: a CPU profile of the main thread (sequencer, journal writer, acks, driver) over the saturated run
  const pi = args.indexOf('--profile');
  const profileFile = pi >= 0 ? args[pi + 1] : undefined;
  const latencyOnly = args.includes('--latency-only');
  const si = args.indexOf('--socket-dir');
  const socketDir = si >= 0 ? args[si + 1] : new URL(server).searchParams.get('host');
  const admin = connectNoDelay(server, { max: 1, application: 'kwx-bench' });
  await admin.unsafe(`create database ${name}`);
  const u = new URL(server);
  u.pathname = `/${name}`;
  if (socketDir !== null) u.searchParams.set('host', socketDir);
  const url = u.toString();
  const sql = connectNoDelay(url, { max: 2, application: 'kwx-bench' });
  const rows: Record<string, string | number>[] = [];
  try {
    await migrate(sql);
    // Two zones trade; a third is filled only for the recovery replay and the raw COPY, so those
    // measure a journal of recovery_events events whatever the length of the runs before them.
    const seeded = await seed(sql, 3, 200);
    const m: Market = { zones: seeded.zones.slice(0, 2), intervals: seeded.intervals.slice(0, 2), users: seeded.users };
    const recZone = seeded.zones[2];
    const recInterval = seeded.intervals[2];
    // Read-model projection is off: it runs behind the journal, not in the acknowledged path.
    const rt = await startRuntime({ database_url: url, workers, journal_batch_max: batch, journal_batch_wait_ms: batchWait, snapshot_every: snapshotEvery > 0 ? snapshotEvery : Number.MAX_SAFE_INTEGER, clock_tick_ms: 50, projections: false });
    const phase = (p: string): void => void process.stderr.write(`pipeline: ${p}\n`);
    phase('waiting for intervals to open');
    await waitOpen(rt, m);
    await waitOpen(rt, { zones: [recZone], intervals: [recInterval], users: m.users });
    phase('warm-up');
    // Warm-up, then the saturated run, then the fixed-rate latency run. The warm-up is a saturated
    // run of its own (--warmup N, default 300,000 orders): the first ~2 s of a fresh process and a
    // fresh journal cost ~8.6 µs of CPU per order against ~5.4 in the steady state after them
    // (measured 2026-12-03: 300,000-order runs 135–138 k/s, 1,500,000-order runs 189 k/s), from
    // V8 growing its heap and young generation and compiling, and PostgreSQL's new table.
    // "Sustained" is the steady state; the warm-up's own rate is printed too.
    const warm = await saturate(rt, makeOrders(m, warmup_n, 1), window);
    rows.push({ run: `warm-up, fresh process (window ${window}; not the figure)`, orders: warmup_n, orders_per_s: Math.round(warm.per_s), errors: warm.errors });
    if (latencyOnly) {
      // --latency-only: the open-loop run alone at --rate (for tuning the ack tail); no results file
      const [pg0] = await sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = 'kwx-journal' and datname = current_database() limit 1`;
      const orders = makeOrders(m, Math.max(rate * 5, 50_000), 3);
      const c = cpuMark(pg0?.pid ?? 0);
      // the worst latency per 10 ms of send time: where the tail comes from (wall-clock times, to line up with server logs)
      const windows = {
        start_ms: 0,
        max_us: new Float64Array(Math.ceil(orders.length / rate) * 100 + 100),
        // the orders sent after the first second: the tail without the start of the run
        steady: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 }),
      };
      const lat = await fixedRate(rt, orders, rate, windows);
      const cpu = cpuPerOrder(c, cpuMark(pg0?.pid ?? 0), orders.length);
      const slow: { at: string; offset_ms: number; max_ms: number }[] = [];
      windows.max_us.forEach((us, w) => {
        if (us > 20_000) slow.push({ at: new Date(windows.start_ms + w * 10).toISOString(), offset_ms: w * 10, max_ms: us / 1000 });
      });
      if (slow.length > 0) printTable('10 ms send windows whose slowest ack took over 20 ms (the first 60)', slow.slice(0, 60));
      const perSecond = new Map<number, number>();
      for (const w of slow) perSecond.set(Math.floor(w.offset_ms / 1000), (perSecond.get(Math.floor(w.offset_ms / 1000)) ?? 0) + 1);
      printTable('slow windows per second of the run', [...perSecond].map(([sec, n]) => ({ second: sec, windows_over_20ms: n })));
      const st = windows.steady;
      printTable('ack latency (ms) of the orders sent after the first second', [
        { orders: st.totalCount, p50: st.getValueAtPercentile(50) / 1000, p90: st.getValueAtPercentile(90) / 1000, p99: st.getValueAtPercentile(99) / 1000, p99_9: st.getValueAtPercentile(99.9) / 1000, max: st.maxValue / 1000 },
      ]);
      await rt.stop();
      const h = lat.hist;
      printTable(`ack latency (ms) at ${rate}/s, open loop`, [
        { orders: h.totalCount, orders_per_s: Math.round(lat.per_s), errors: lat.errors, p50: h.getValueAtPercentile(50) / 1000, p90: h.getValueAtPercentile(90) / 1000, p99: h.getValueAtPercentile(99) / 1000, p99_9: h.getValueAtPercentile(99.9) / 1000, max: h.maxValue / 1000, ...roundAll(cpu) },
      ]);
      return;
    }
    phase('saturated run');
    const satOrders = makeOrders(m, orders_n, 2);
    const [pg] = await sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = 'kwx-journal' and datname = current_database() limit 1`;
    const pgPid = pg?.pid ?? 0;
    const js0 = rt.status().journal_stats;
    const stopProfile = profileFile === undefined ? null : await startProfile(profileFile);
    const c0 = cpuMark(pgPid);
    const sat = await saturate(rt, satOrders, window);
    const c1 = cpuMark(pgPid);
    await stopProfile?.();
    const js1 = rt.status().journal_stats;
    const satCpu = cpuPerOrder(c0, c1, orders_n);
    const commits = js1.commits - js0.commits;
    const satJournal = { rows_per_commit: (js1.rows - js0.rows) / commits, bytes_per_row: (js1.bytes - js0.bytes) / (js1.rows - js0.rows), journal_busy_pct: (100 * (js1.busy_ms - js0.busy_ms)) / (orders_n / sat.per_s) / 1000 };
    process.stderr.write(`pipeline: saturated ${Math.round(sat.per_s)}/s ${JSON.stringify(satJournal)} cpu µs/order ${JSON.stringify(satCpu)}\n`);
    phase('fixed-rate run');
    const target = Math.min(rate, Math.floor(sat.per_s * 0.7));
    const latOrders = makeOrders(m, Math.max(target * 5, 50_000), 3);
    const c2 = cpuMark(pgPid);
    const lat = await fixedRate(rt, latOrders, target);
    const latCpu = cpuPerOrder(c2, cpuMark(pgPid), latOrders.length);
    await rt.stop();
    phase('recovery');
    const p50 = lat.hist.getValueAtPercentile(50) / 1000;
    const p99 = lat.hist.getValueAtPercentile(99) / 1000;
    const p999 = lat.hist.getValueAtPercentile(99.9) / 1000;
    rows.push({ run: `saturated (window ${window})`, orders: orders_n, orders_per_s: Math.round(sat.per_s), errors: sat.errors });
    rows.push({ run: `fixed rate ${target}/s`, orders: lat.hist.totalCount, orders_per_s: Math.round(lat.per_s), errors: lat.errors });

    // Fill one zone's journal through the runtime until it holds recovery_events engine events
    // (commands × events per command of this workload), then time a replay of it.
    const events_per_row = sat.events / orders_n;
    const recovery_rows = Math.ceil(recovery_events / events_per_row);
    const [{ n: have }] = await sql<{ n: string }[]>`select count(*) as n from engine_journal where zone_id = ${recZone}`;
    const missing = recovery_rows - Number(have);
    if (missing > 0) {
      const rt2 = await startRuntime({ database_url: url, workers: 1, zones: [recZone], snapshot_every: Number.MAX_SAFE_INTEGER, lifecycle: false, projections: false });
      const more = makeOrders({ ...m, zones: [recZone], intervals: [recInterval] }, missing, 4);
      await saturate(rt2, more, 4000);
      await rt2.stop();
    }
    phase('replaying the journal');
    const rec = await recoverZone(url, recZone, { from_scratch: true });
    const [{ events: evCount }] = await sql<{ events: string }[]>`select count(*) as events from engine_journal where zone_id = ${recZone}`;
    const recovery_s = rec.duration_ms / 1000;

    phase('raw COPY');
    const raw = await rawCopy(url, sql, recZone, batch, 'none');
    const rawCheck = await rawCopy(url, sql, recZone, batch, 'trigger0016');
    const rawPart = await rawCopy(url, sql, recZone, batch, 'partitioned');
    const tr = transport();
    printTable('pipeline: sequencer → worker → journal (COPY, group commit) → ack', rows);
    printTable('ack latency (ms, open loop)', [{ p50: p50, p99: p99, p99_9: p999, max: lat.hist.maxValue / 1000 }]);
    printTable('recovery and raw ceiling', [
      { what: `recovery (replay of ${Math.round(rec.replayed_rows * events_per_row).toLocaleString('en-US')} events, no snapshot)`, rows: rec.replayed_rows, seconds: recovery_s, rows_per_s: Math.round(rec.replayed_rows / recovery_s), pg_backend_us_per_row: '' },
      { what: 'raw batched COPY, no engine (table LIKE engine_journal: no zone check)', rows: raw.rows, seconds: raw.rows / raw.per_s, rows_per_s: Math.round(raw.per_s), pg_backend_us_per_row: raw.pg_us_per_row },
      { what: 'raw batched COPY, no engine, + 0016\'s statement-trigger zone check (replaced by 0017)', rows: rawCheck.rows, seconds: rawCheck.rows / rawCheck.per_s, rows_per_s: Math.round(rawCheck.per_s), pg_backend_us_per_row: rawCheck.pg_us_per_row },
      { what: 'raw batched COPY, no engine, partitioned by zone as engine_journal (0017)', rows: rawPart.rows, seconds: rawPart.rows / rawPart.per_s, rows_per_s: Math.round(rawPart.per_s), pg_backend_us_per_row: rawPart.pg_us_per_row },
    ]);
    printTable('CPU per order (µs): this process, its main thread, the other threads (zone worker, libuv, GC), the journal\'s PostgreSQL backend', [
      { run: 'saturated', ...roundAll(satCpu) },
      { run: `fixed rate ${target}/s`, ...roundAll(latCpu) },
    ]);
    printTable('worker transport, ns per order (batch of 1,000 results)', tr.map((t) => ({ transport: t.name, ns_per_order: Math.round(t.ns_per_order) })));
    const metrics = {
      durable_orders_per_s: Math.round(sat.per_s),
      ack_p50_ms: p50,
      ack_p99_ms: p99,
      recovery_1m_events_s: recovery_s,
      raw_copy_rows_per_s: Math.round(raw.per_s),
      ratio_vs_raw_copy: sat.per_s / raw.per_s,
    };
    writeResults('pipeline', metrics, {
      details: {
        journal_rows_replayed: rec.replayed_rows,
        events_per_journal_row: events_per_row,
        journal_events_replayed: Math.round(rec.replayed_rows * events_per_row),
        journal_rows_in_zone: Number(evCount),
        latency_run_rate_per_s: target,
        ack_p999_ms: p999,
        workers,
        journal_batch_max: batch,
        // checkpoints (hash row + snapshot) every max(this, 2 × open orders) commands per zone; 0 = none
        snapshot_every: snapshotEvery,
        transport_to_postgres: socketDir !== null ? `unix socket in ${socketDir}` : 'TCP (noDelay)',
        saturated_journal: satJournal,
        raw_copy_with_journal_check_rows_per_s: Math.round(rawCheck.per_s),
        ratio_vs_raw_copy_with_journal_check: sat.per_s / rawCheck.per_s,
        raw_copy_pg_backend_us_per_row: Math.round(raw.pg_us_per_row * 100) / 100,
        raw_copy_with_journal_check_pg_backend_us_per_row: Math.round(rawCheck.pg_us_per_row * 100) / 100,
        raw_copy_partitioned_rows_per_s: Math.round(rawPart.per_s),
        ratio_vs_raw_copy_partitioned: sat.per_s / rawPart.per_s,
        raw_copy_partitioned_pg_backend_us_per_row: Math.round(rawPart.pg_us_per_row * 100) / 100,
        cpu_us_per_order_saturated: roundAll(satCpu),
        cpu_us_per_order_fixed_rate: roundAll(latCpu),
        transport_ns_per_order: Object.fromEntries(tr.map((t) => [t.name, Math.round(t.ns_per_order)])),
      },
    });
  } finally {
    await sql.end({ timeout: 2 });
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end({ timeout: 2 });
  }
}
