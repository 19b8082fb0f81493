// `npm run bench -- ingest [--readings N] [--meters M] [--batch B] [--concurrency C] [--threads T] [--writers W] [--profile FILE]`
//
// Against a real PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres):
// 1. HTTP batches (JSON, one meter per request, simulator curves) → uWS → decode+validate in
//    piscina → group-commit writer → acknowledged = durable. readings_per_s counts from the first
//    request sent to the last acknowledgement.
// 2. The ceiling: the same rows into the same (emptied) table by one plain COPY, no validation, in
//    text, in binary meter by meter, and in binary in the order the HTTP phase sends the rows; the
//    fastest counts.
// 3. rollup_lag_ms_p99: from a readings group's commit until the roll-up applier has folded it,
//    weighted by readings.
// --profile FILE: a V8 CPU profile of the main thread (HTTP client, uWS, writer) over the ingest
// phase (the decode worker is not covered: node --cpu-prof for it).
// Writes bench/results/ingest.json.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import uWS from 'uWebSockets.js';
import { connect, redactUrl, type Sql } from '../schema/db.js';
import { migrate } from '../schema/migrate.js';
import { createLogger } from '../schema/log.js';
import { createIngestService, issueMeterToken, registerIngestRoutes } from '../ingest/index.js';
import { encodeReadingsCopy } from '../ingest/writer.js';
import type { DecodedReadings, MeterContext } from '../ingest/types.js';
import { simulateReadings, type SimReading } from './meter-sim.js';
import { startProfile } from './profile.js';
import { printTable, writeResults } from './report.js';

interface Args {
  readings: number;
  meters: number;
  batch: number;
  concurrency: number;
  threads: number;
  writers: number;
}

function parseArgs(args: string[]): Args {
  const get = (name: string, def: number): number => {
    const i = args.indexOf(`--${name}`);
    if (i < 0) return def;
    const v = Number(args[i + 1]);
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`--${name} needs a positive integer`);
    return v;
  };
  return { readings: get('readings', 1_000_000), meters: get('meters', 500), batch: get('batch', 2_000), concurrency: get('concurrency', 8), threads: get('threads', 1), writers: get('writers', 2) };
}

const DAY = 86_400_000;
const BINARY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
const BINARY_TRAILER = Buffer.from([0xff, 0xff]);

export async function run(argv: string[]): Promise<void> {
  const a = parseArgs(argv);
  const perMeter = Math.ceil(a.readings / a.meters);
  const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `kwx_bench_ingest_${randomBytes(4).toString('hex')}`;
  const admin = connect(serverUrl, { max: 1 });
  await admin.unsafe(`create database ${dbName}`);
  const u = new URL(serverUrl);
  u.pathname = `/${dbName}`;
  const sql = connect(u.toString(), { max: 8, application: 'kwx-bench-ingest' });
  console.log(`ingest bench: ${a.meters} meters × ${perMeter} readings (${a.meters * perMeter} total), ${a.batch}/request, ${a.concurrency} requests in flight, ${a.threads} decode thread(s), PostgreSQL ${redactUrl(serverUrl)}`);
  try {
    await migrate(sql);
    const nowMs = Date.now();
    const fromMs = Math.floor((nowMs - perMeter * 15 * 60_000 - DAY) / (15 * 60_000)) * 15 * 60_000;
    const meters = await createMeters(sql, a.meters, new Date(fromMs - DAY));

    // request bodies and the equivalent COPY text, generated before any timing
    const bodies: { token: string; body: Buffer; bin: Buffer }[] = [];
    const copyChunks: string[] = [];
    const binaryChunks: Buffer[] = [];
    const receivedMs = Date.now();
    const receivedAt = new Date(receivedMs).toISOString();
    for (let k = 0; k < meters.length; k++) {
      const m = meters[k];
      const items = simulateReadings({ serial: m.serial, max_power_w: 20_000, interval_minutes: 15, pv_peak_w: 6_000, base_load_w: 350, seed: k + 1 }, fromMs, perMeter);
      const readings: SimReading[] = items.map((i) => i.reading);
      copyChunks.push(readings.map((r) => `${m.id}\t${r.interval_start}\t15\t${r.production_wh}\t${r.consumption_wh}\t0\t${receivedAt}\n`).join(''));
      // the same rows in binary COPY format (the format the writer uses), one chunk per meter
      const n = readings.length;
      const rows = {
        n,
        index: new Int32Array(n),
        start_s: Float64Array.from(readings, (r) => Date.parse(r.interval_start) / 1000),
        minutes: new Int16Array(n).fill(15),
        production_wh: Float64Array.from(readings, (r) => Number(r.production_wh)),
        consumption_wh: Float64Array.from(readings, (r) => Number(r.consumption_wh)),
        quality: new Int16Array(n),
      };
      const one = encodeReadingsCopy([{ meter: { id: m.id } as MeterContext, d: { rows } as DecodedReadings }], receivedMs * 1000);
      // strip the per-buffer header (19 bytes) and trailer (2 bytes); added once around all chunks
      binaryChunks.push(one.subarray(19, one.length - 2));
      // each request's rows in binary too (74 bytes a row), for the COPY in arrival order
      for (let i = 0; i < readings.length; i += a.batch) {
        bodies.push({ token: m.token, body: Buffer.from(JSON.stringify(readings.slice(i, i + a.batch))), bin: one.subarray(19 + i * 74, 19 + Math.min(i + a.batch, n) * 74) });
      }
    }
    // interleave meters so that concurrent requests come from different meters
    bodies.sort((x, y) => (x.token < y.token ? -1 : 1));
    const order = interleave(bodies, meters.length);
    const total = a.meters * perMeter;

    const service = await createIngestService({ sql, log: createLogger('warn', 'ingest-bench'), worker_threads: a.threads, limits: { writer_connections: a.writers } });
    const app = uWS.App();
    registerIngestRoutes(app, { service, log: createLogger('warn', 'ingest-bench') });
    const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s === false ? reject(new Error('listen failed')) : resolve(s))));
    const port = uWS.us_socket_local_port(listen as unknown as uWS.us_socket);
    const url = `http://127.0.0.1:${port}/ingest/readings`;

    let accepted = 0;
    let retries503 = 0;
    // both phases start right after a checkpoint (same full-page-write cost)
    await sql`checkpoint`;
    const pi = argv.indexOf('--profile');
    const stopProfile = pi >= 0 && argv[pi + 1] !== undefined ? await startProfile(argv[pi + 1]) : null;
    const cpu0 = process.cpuUsage();
    const pg0 = postgresCpu(dbName);
    const t0 = performance.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        if (i >= order.length) return;
        const { token, body } = order[i];
        for (;;) {
          const res = await post(url, token, body);
          const json = JSON.parse(res.body) as { accepted?: number; error?: { code: string } };
          if (res.status === 503) {
            retries503++;
            await new Promise((r) => setTimeout(r, 50));
            continue;
          }
          if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(json)}`);
          accepted += json.accepted ?? 0;
          break;
        }
      }
    };
    await Promise.all(Array.from({ length: a.concurrency }, worker));
    const ingestS = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const nodeCpuS = (cpu.user + cpu.system) / 1e6;
    const pgCpuS = cpuDelta(pg0, postgresCpu(dbName));
    if (stopProfile !== null) await stopProfile();
    await service.settle();
    const stats = service.stats();
    agent.destroy();
    uWS.us_listen_socket_close(listen);
    await service.close();
    const [{ n: stored }] = await sql<{ n: number }[]>`select count(*)::int as n from meter_readings`;
    if (stored !== total || accepted !== total) throw new Error(`expected ${total} readings stored, got ${stored} (accepted ${accepted})`);
    const [{ n: rolled }] = await sql<{ n: string }[]>`select sum(reading_count)::int8 as n from reading_rollups where scope = 'METER' and period = 'HOUR'`;
    if (Number(rolled) !== total) throw new Error(`roll-ups count ${rolled} readings, expected ${total}`);

    // ceiling: the same rows, same table (its primary key and checks), one plain COPY, no
    // validation, no roll-ups; in text and in binary format (the writer's), the faster one counts
    const plainCopy = async (format: 'text' | 'binary' | 'arrival'): Promise<{ s: number; pg: number | null }> => {
      await sql`truncate meter_readings`;
      await sql`checkpoint`;
      const pg0 = postgresCpu(dbName);
      const c0 = performance.now();
      const stream = await sql.unsafe(`copy meter_readings (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality, received_at) from stdin${format === 'text' ? '' : ' (format binary)'}`).writable();
      const chunks: (string | Buffer)[] =
        format === 'text' ? copyChunks : [BINARY_HEADER, ...(format === 'binary' ? binaryChunks : order.map((o) => o.bin)), BINARY_TRAILER];
      await new Promise<void>((resolve, reject) => {
        stream.on('error', reject);
        stream.on('finish', () => resolve());
        let i = 0;
        const pump = (): void => {
          while (i < chunks.length) {
            if (!stream.write(chunks[i++])) {
              stream.once('drain', pump);
              return;
            }
          }
          stream.end();
        };
        pump();
      });
      const seconds = (performance.now() - c0) / 1000;
      const pg = cpuDelta(pg0, postgresCpu(dbName));
      const [{ n: copied }] = await sql<{ n: number }[]>`select count(*)::int as n from meter_readings`;
      if (copied !== total) throw new Error(`COPY (${format}) stored ${copied} rows, expected ${total}`);
      return { s: seconds, pg };
    };
    const text = await plainCopy('text');
    const binary = await plainCopy('binary');
    // the same binary rows in the order the HTTP phase sends them (meters interleaved, as ingest
    // receives them), instead of meter by meter: shows what arrival order costs the primary key
    const arrival = await plainCopy('arrival');
    const best = [text, binary, arrival].reduce((x, y) => (y.s < x.s ? y : x));
    const copyS = best.s;
    const copyPgCpuS = best.pg;

    const readingsPerS = Math.round(total / ingestS);
    const copyPerS = Math.round(total / copyS);
    const metrics = {
      readings_per_s: readingsPerS,
      raw_copy_rows_per_s: copyPerS,
      ratio_vs_raw_copy: Math.round((readingsPerS / copyPerS) * 1000) / 1000,
      rollup_lag_ms_p99: Math.round(stats.rollup_lag_ms_p99 ?? 0),
    };
    printTable('ingest: HTTP batches → validated → durable, vs plain COPY', [
      { path: 'HTTP JSON batches (validated, durable, rolled up)', readings: total, seconds: ingestS, rows_per_s: readingsPerS },
      { path: 'plain COPY, text (same rows, no validation)', readings: total, seconds: text.s, rows_per_s: Math.round(total / text.s) },
      { path: 'plain COPY, binary (same rows, no validation)', readings: total, seconds: binary.s, rows_per_s: Math.round(total / binary.s) },
      { path: 'plain COPY, binary, in arrival order', readings: total, seconds: arrival.s, rows_per_s: Math.round(total / arrival.s) },
    ]);
    printTable('summary', [{ ...metrics, retries_503: retries503, node_cpu_s: nodeCpuS, pg_cpu_s: pgCpuS ?? -1, copy_pg_cpu_s: copyPgCpuS ?? -1 }]);
    writeResults('ingest', metrics, {
      params: { ...a, readings: total, per_meter: perMeter, format: 'json' },
      targets: { readings_per_s: 200_000, ratio_vs_raw_copy: 0.6 },
      retries_503: retries503,
      node_cpu_s_during_ingest: Math.round(nodeCpuS * 100) / 100,
      postgres_cpu_s_during_ingest: pgCpuS === null ? null : Math.round(pgCpuS * 100) / 100,
      postgres_cpu_s_during_copy: copyPgCpuS === null ? null : Math.round(copyPgCpuS * 100) / 100,
      raw_copy_text_rows_per_s: Math.round(total / text.s),
      raw_copy_binary_rows_per_s: Math.round(total / binary.s),
      raw_copy_binary_arrival_order_rows_per_s: Math.round(total / arrival.s),
      postgres_cpu_s_during_copy_binary: binary.pg,
      postgres_cpu_s_during_copy_binary_arrival_order: arrival.pg,
      load_average_1m: Math.round(loadavg()[0] * 100) / 100,
      ingest_seconds: Math.round(ingestS * 100) / 100,
    });
  } finally {
    await sql.end({ timeout: 5 });
    await admin.unsafe(`drop database if exists ${dbName} with (force)`);
    await admin.end({ timeout: 5 });
  }
}

async function createMeters(sql: Sql, count: number, registeredAt: Date): Promise<{ id: number; serial: string; token: string }[]> {
  const [zone] = await sql<{ id: string }[]>`
    insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh, timezone)
    values ('BENCH', 'Bench zone', 'EUR', 0.0001, 1000000000, 1, 100000, 1000000, 'Europe/Berlin') returning id`;
  const [user] = await sql<{ id: string }[]>`insert into users (email, name, role) values ('bench@example.com', 'bench', 'PROSUMER') returning id`;
  const serials = Array.from({ length: count }, (_, i) => `BENCH-${String(i).padStart(6, '0')}`);
  const rows = await sql<{ id: string; serial: string }[]>`
    insert into smart_meters (serial, user_id, zone_id, max_power_w, interval_minutes, registered_at)
    select s, ${user.id}, ${zone.id}, 20000, 15, ${registeredAt} from unnest(${serials}::text[]) as s
    returning id, serial`;
  const out: { id: number; serial: string; token: string }[] = [];
  for (const r of rows) out.push({ id: Number(r.id), serial: r.serial, token: await issueMeterToken(sql, Number(r.id)) });
  return out;
}

// The load generator: node:http with a keep-alive agent, one socket per request in flight. (It
// shares the 2 cores with the server and PostgreSQL; the global fetch cost ~5x more CPU per
// request, ~1 CPU-s per million readings at 2,000 per request, charged to ingest although the COPY
// ceiling pays nothing like it.)
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function post(url: string, token: string, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Round-robin over meters: request i of every meter before request i+1 of any. */
function interleave<T extends { token: string }>(sorted: T[], meters: number): T[] {
  const byMeter = new Map<string, T[]>();
  for (const b of sorted) {
    const l = byMeter.get(b.token) ?? [];
    l.push(b);
    byMeter.set(b.token, l);
  }
  const lists = [...byMeter.values()];
  const out: T[] = [];
  for (let i = 0; out.length < sorted.length; i++) for (const l of lists) if (i < l.length) out.push(l[i]);
  void meters;
  return out;
}

/**
 * CPU seconds used so far by the local PostgreSQL backends serving database `db`, by pid (Linux
 * /proc; empty elsewhere or when the server is remote). Background processes (WAL writer,
 * checkpointer) are not counted.
 */
function postgresCpu(db: string): Map<number, number> {
  const out = new Map<number, number>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(` ${db} `)) continue;
      const f = stat.slice(close + 2).split(' ');
      out.set(Number(pid), (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** CPU seconds used between two samples by the processes alive at the second (null without /proc). */
function cpuDelta(before: Map<number, number>, after: Map<number, number>): number | null {
  if (after.size === 0) return null;
  let s = 0;
  for (const [pid, t] of after) {
    s += t - (before.get(pid) ?? 0);
    if (process.env.KWX_BENCH_PG_DETAIL === '1' && t - (before.get(pid) ?? 0) > 0.05) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        // gone
      }
      console.log(`  postgres pid ${pid}: ${(t - (before.get(pid) ?? 0)).toFixed(2)} s  ${cmd}`);
    }
  }
  return Math.round(s * 100) / 100;
}
