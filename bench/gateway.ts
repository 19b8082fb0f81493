// `npm run bench -- gateway`: the WebSocket path on loopback (issue 6).
//   order  100 concurrent bots (ws clients in a worker thread) each send place → wait for ack, for
//          ORDERS_PER_BOT orders or MAX_ORDER_PHASE_MS; buys and sells cross so most orders fill
//          (the taker's ack carries its fills, so order→fill for the taker = the ack round trip).
//   fanout 1,000 subscribers (raw-socket frame counters in the worker) on one book channel; the
//          main thread drives book changes through the engine; counts frames delivered per second.
//   echo   the floor: a bare uWS echo server, same client, same machine.
// The server side is the real gateway (attachGateway on startHttpServer) with the engine core
// in-process (createCoreBackend) and no ledger; PostgreSQL from DATABASE_URL or embedded.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect as netConnect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { printTable, writeResults } from './report.js';

// `--bots N`, `--orders-per-bot N` and `--no-fanout` for investigations (defaults are the issue's setup).
const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const BOTS = Number(argValue('--bots') ?? 100);
const ORDERS_PER_BOT = Number(argValue('--orders-per-bot') ?? 600);
const FANOUT = !process.argv.includes('--no-fanout');
const MAX_ORDER_PHASE_MS = 15_000;
const SUBSCRIBERS = 1000;
const FANOUT_UPDATES = 2000;
const ECHO_ROUND_TRIPS = 20_000;

interface WorkerJob {
  kind: 'orders' | 'echo' | 'echo_bots' | 'fanout';
  bots?: number;
  port: number;
  zone_id?: number;
  interval_id?: number;
  creds?: { key_id: string; secret: string }[];
  expected?: number;
  orders_per_bot?: number;
}

// ---------------------------------------------------------------------------------------------
// Worker side: clients.

async function workerMain(job: WorkerJob): Promise<void> {
  const { WebSocket } = await import('ws');
  const { loginMessage } = await import('../gateway/auth.js');
  const url = `ws://127.0.0.1:${job.port}/ws`;
  const open = (u: string) =>
    new Promise<InstanceType<typeof WebSocket>>((resolve, reject) => {
      const ws = new WebSocket(u, { perMessageDeflate: false });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  if (job.kind === 'echo') {
    const ws = await open(`ws://127.0.0.1:${job.port}/`);
    const rtt: number[] = [];
    await new Promise<void>((resolve) => {
      let t0 = 0;
      let n = 0;
      ws.on('message', () => {
        rtt.push((performance.now() - t0) * 1000);
        if (++n >= ECHO_ROUND_TRIPS) return resolve();
        t0 = performance.now();
        ws.send('{"type":"ping","req_id":1}');
      });
      t0 = performance.now();
      ws.send('{"type":"ping","req_id":1}');
    });
    ws.close();
    parentPort!.postMessage({ rtt_us: rtt });
    return;
  }
  if (job.kind === 'echo_bots') {
    // The machine's ceiling for this client design: `bots` clients in this one thread, closed loop,
    // against the bare echo server, with an order-sized message (the same syscalls per round trip).
    const n = job.bots ?? 100;
    const per = job.orders_per_bot ?? ORDERS_PER_BOT;
    const clients = await Promise.all(Array.from({ length: n }, () => open(`ws://127.0.0.1:${job.port}/`)));
    const rtt: number[] = [];
    const started = performance.now();
    await Promise.all(clients.map((ws, b) => new Promise<void>((resolve) => {
      let i = 0;
      let t0 = 0;
      const next = (): void => {
        if (i >= per || performance.now() - started > MAX_ORDER_PHASE_MS) return resolve();
        t0 = performance.now();
        ws.send(`{"type":"place","req_id":${i},"zone_id":1,"interval_id":1,"client_order_id":"b${b}o${i}","side":"BUY","source":"ANY","order_type":"LIMIT","price":"0.1000","qty":"1.000"}`);
        i++;
      };
      ws.on('message', () => {
        rtt.push((performance.now() - t0) * 1000);
        next();
      });
      next();
    })));
    const elapsed_ms = performance.now() - started;
    for (const ws of clients) ws.close();
    parentPort!.postMessage({ rtt_us: rtt, elapsed_ms });
    return;
  }
  if (job.kind === 'orders') {
    const bots = await Promise.all(job.creds!.map(async (c) => {
      const ws = await open(url);
      await new Promise<void>((resolve) => {
        ws.on('message', function first(d: Buffer) {
          const m = JSON.parse(d.toString());
          if (m.type === 'logged_in') {
            ws.off('message', first);
            resolve();
          }
        });
        ws.send(JSON.stringify(loginMessage({ key_id: c.key_id, algorithm: 'HMAC_SHA256', secret: c.secret })));
      });
      return ws;
    }));
    const rtt: number[] = [];
    let rejects = 0;
    const started = performance.now();
    await Promise.all(bots.map((ws, b) => new Promise<void>((resolve) => {
      let i = 0;
      let t0 = 0;
      const sendNext = (): void => {
        if (i >= (job.orders_per_bot ?? ORDERS_PER_BOT) || performance.now() - started > MAX_ORDER_PHASE_MS) return resolve();
        const sell = (b + i) % 2 === 0;
        const price = sell ? 1000 + ((i * 7 + b) % 20) : 1010 - ((i * 5 + b) % 20);
        t0 = performance.now();
        ws.send(`{"type":"place","req_id":${i},"zone_id":${job.zone_id},"interval_id":${job.interval_id},"client_order_id":"b${b}o${i}","side":"${sell ? 'SELL' : 'BUY'}","source":"${sell ? 'SOLAR' : 'ANY'}","order_type":"${i % 4 === 3 ? 'IOC' : 'LIMIT'}","price":"${(price / 10000).toFixed(4)}","qty":"${1 + (i % 5)}.000"}`);
        i++;
      };
      ws.on('message', (d: Buffer) => {
        const s = d.toString();
        if (!s.startsWith('{"type":"ack"') && !s.startsWith('{"type":"reject"')) return; // private stream
        rtt.push((performance.now() - t0) * 1000);
        if (s.startsWith('{"type":"reject"')) rejects++;
        sendNext();
      });
      sendNext();
    })));
    const elapsed_ms = performance.now() - started;
    for (const ws of bots) ws.close();
    parentPort!.postMessage({ rtt_us: rtt, elapsed_ms, rejects });
    return;
  }
  // fanout: raw sockets that count WebSocket frames without decoding them.
  let frames = 0;
  let firstAt = 0;
  let lastAt = 0;
  const sockets: Socket[] = [];
  const counters = await Promise.all(Array.from({ length: SUBSCRIBERS }, () => new Promise<Socket>((resolve, reject) => {
    const sock = netConnect(job.port, '127.0.0.1');
    sock.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    let upgraded = false;
    sock.on('error', reject);
    sock.on('connect', () => {
      sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        upgraded = true;
        buf = buf.subarray(end + 4);
        // subscribe (client frames are masked; a zero mask keeps the payload readable)
        const payload = Buffer.from(JSON.stringify({ type: 'subscribe', channel: 'book', zone_id: job.zone_id, interval_id: job.interval_id }));
        sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]));
        resolve(sock);
      }
      let off = 0;
      while (buf.length - off >= 2) {
        let len = buf[off + 1] & 0x7f;
        let hdrLen = 2;
        if (len === 126) {
          if (buf.length - off < 4) break;
          len = buf.readUInt16BE(off + 2);
          hdrLen = 4;
        } else if (len === 127) {
          if (buf.length - off < 10) break;
          len = Number(buf.readBigUInt64BE(off + 2));
          hdrLen = 10;
        }
        if (buf.length - off < hdrLen + len) break;
        frames++;
        off += hdrLen + len;
      }
      buf = buf.subarray(off);
      const t = performance.now();
      if (firstAt === 0) firstAt = t;
      lastAt = t;
    });
  })));
  sockets.push(...counters);
  parentPort!.postMessage({ ready: true });
  const baseline = await new Promise<number>((resolve) => parentPort!.once('message', () => resolve(frames)));
  firstAt = 0;
  const target = baseline + job.expected!;
  const deadline = performance.now() + 30_000;
  while (frames < target && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  for (const s of sockets) s.destroy();
  parentPort!.postMessage({ frames: frames - baseline, elapsed_ms: lastAt - firstAt });
}

if (!isMainThread && (workerData as { benchGateway?: boolean } | null)?.benchGateway === true) {
  await workerMain((workerData as { job: WorkerJob }).job);
}

// ---------------------------------------------------------------------------------------------
// Main side: servers and measurement.

function runWorker<T>(job: WorkerJob, onReady?: (w: Worker) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { benchGateway: true, job } });
    w.on('message', (m: { ready?: boolean }) => {
      if (m.ready === true) onReady?.(w);
      else {
        resolve(m as T);
        void w.terminate();
      }
    });
    w.on('error', reject);
  });
}

function pct(values: number[], p: number): number {
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  for (const v of values) h.recordValue(Math.max(1, Math.round(v)));
  return h.getValueAtPercentile(p);
}

export async function run(_args: string[]): Promise<void> {
  const { loadUws } = await import('../gateway/uws.js');
  const { startHttpServer } = await import('../gateway/server.js');
  const { createMetricsRegistry } = await import('../gateway/metrics.js');
  const { attachGateway, createCoreBackend, createApiKey } = await import('../gateway/index.js');
  const { connect, startEmbeddedPostgres } = await import('../schema/db.js');
  const { migrate } = await import('../schema/migrate.js');

  // PostgreSQL: a throwaway database on DATABASE_URL's server, or an embedded one.
  let serverUrl = process.env.DATABASE_URL ?? '';
  let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
  let embeddedDir: string | undefined;
  if (serverUrl === '') {
    embeddedDir = mkdtempSync(join(tmpdir(), 'kwx-bench-pg-'));
    chmodSync(embeddedDir, 0o755);
    embedded = await startEmbeddedPostgres({ dir: embeddedDir, port: 54000 + Math.floor(Math.random() * 1000), ephemeral: true });
    serverUrl = embedded.url;
  }
  const dbName = `kwx_bench_${randomBytes(4).toString('hex')}`;
  const admin = connect(serverUrl, { max: 1 });
  await admin.unsafe(`create database ${dbName}`);
  const u = new URL(serverUrl);
  u.pathname = `/${dbName}`;
  const sql = connect(u.toString(), { max: 4 });
  await migrate(sql);

  const [zone] = await sql`insert into grid_zones (code, name, currency, tick_size, capacity_w, price_band_min_ticks, price_band_max_ticks, max_order_wh)
    values ('BENCH', 'Bench', 'EUR', 0.0001, 1000000000, 0, 100000, 1000000000) returning id`;
  const zone_id = Number(zone.id);
  const [iv] = await sql`insert into delivery_intervals (zone_id, starts_at, ends_at, gate_opens_at, gate_closes_at, capacity_wh)
    values (${zone_id}, now() + interval '2 hours', now() + interval '2 hours 15 minutes', now() - interval '1 hour', now() + interval '1 hour', 1000000000000000) returning id`;
  const interval_id = Number(iv.id);
  const creds: { key_id: string; secret: string }[] = [];
  for (let b = 0; b < BOTS; b++) {
    const [usr] = await sql`insert into users (email, name, role) values (${`bot${b}@bench.kwx`}, ${`bot${b}`}, 'PROSUMER') returning id`;
    const k = await createApiKey(sql, { user_id: Number(usr.id), algorithm: 'HMAC_SHA256' });
    creds.push({ key_id: k.key_id, secret: k.secret! });
  }
  const core = createCoreBackend();
  core.addZone({ zone_id, price_step_ticks: 1, lot_wh: 1, band_min_ticks: 0, band_max_ticks: 100_000, min_qty_wh: 1, max_qty_wh: 1_000_000_000, max_open_orders_per_user: 1_000_000 });
  core.openInterval(zone_id, interval_id, 1e15);
  const metrics = createMetricsRegistry();
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, metrics, version: 'bench' });
  const gw = await attachGateway({
    app: server.app, sql, metrics, backend: core,
    limits: { max_connections: 5000, key_orders_burst: 1e9, key_orders_per_s: 1e9, conn_msgs_burst: 1e9, conn_msgs_per_s: 1e9, disconnect_buffered_bytes: 64 * 1024 * 1024 },
  });

  // Echo floor.
  const uws = loadUws();
  const echoApp = uws.App();
  echoApp.ws('/*', { message: (ws, msg, isBinary) => void ws.send(msg, isBinary) });
  const echoPort = await new Promise<number>((resolve) => echoApp.listen('127.0.0.1', 0, (s) => resolve(uws.us_socket_local_port(s as never))));
  const echo = await runWorker<{ rtt_us: number[] }>({ kind: 'echo', port: echoPort });

  const echoBots = await runWorker<{ rtt_us: number[]; elapsed_ms: number }>({ kind: 'echo_bots', port: echoPort, bots: BOTS, orders_per_bot: ORDERS_PER_BOT });

  // Orders.
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const orders = await runWorker<{ rtt_us: number[]; elapsed_ms: number; rejects: number }>({ kind: 'orders', port: server.port, zone_id, interval_id, creds, orders_per_bot: ORDERS_PER_BOT });

  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  const dur = (await metrics.getSingleMetric('kwx_ws_message_duration_seconds')!.get()).values;
  const placeSum = dur.find((v) => (v as { metricName?: string }).metricName === 'kwx_ws_message_duration_seconds_sum' && v.labels.type === 'place')?.value ?? 0;
  const placeCount = dur.find((v) => (v as { metricName?: string }).metricName === 'kwx_ws_message_duration_seconds_count' && v.labels.type === 'place')?.value ?? 1;
  console.log(`order phase: server time per place, message in → ack queued: ${((placeSum / placeCount) * 1e6).toFixed(0)} µs (mean)`);
  console.log(`order phase: server event-loop utilisation ${(elu.utilization * 100).toFixed(0)}%, process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms (all threads)`);

  // Fan-out: each engine command changes one level of the book → one delta to every subscriber.
  const fan = !FANOUT ? { frames: 0, elapsed_ms: 1 } : await runWorker<{ frames: number; elapsed_ms: number }>({ kind: 'fanout', port: server.port, zone_id, interval_id: interval_id, expected: FANOUT_UPDATES * SUBSCRIBERS }, (w) => {
    setTimeout(() => {
      w.postMessage('go');
      let i = 0;
      const pump = (): void => {
        for (let k = 0; k < 50 && i < FANOUT_UPDATES; k++, i++) {
          void core.submit(zone_id, { type: 'PLACE', user_id: 1, client_order_id: `f${i}`, zone_id, interval_id, side: 'SELL', source: 'WIND', order_type: 'LIMIT', price_ticks: 50_000 + (i % 500), qty_wh: 1000 });
        }
        if (i < FANOUT_UPDATES) setImmediate(pump);
      };
      pump();
    }, 500);
  });

  const order_rtt_p50_us = pct(orders.rtt_us, 50);
  const order_rtt_p99_us = pct(orders.rtt_us, 99);
  const orders_per_s = Math.round((orders.rtt_us.length / orders.elapsed_ms) * 1000);
  const fanout_msgs_per_s = Math.round((fan.frames / Math.max(1, fan.elapsed_ms)) * 1000);
  const echo_rtt_p50_us = pct(echo.rtt_us, 50);
  const rtt_ratio_vs_echo = Math.round((order_rtt_p50_us / echo_rtt_p50_us) * 100) / 100;
  const echo_bots_msgs_per_s = Math.round((echoBots.rtt_us.length / echoBots.elapsed_ms) * 1000);
  const echo_bots_rtt_p50_us = pct(echoBots.rtt_us, 50);
  const echo_bots_rtt_p99_us = pct(echoBots.rtt_us, 99);
  printTable('gateway (loopback, 100 bots, 1,000 subscribers)', [
    { measure: 'order round trip p50 (µs)', value: order_rtt_p50_us, target: '' },
    { measure: 'order round trip p99 (µs)', value: order_rtt_p99_us, target: '≤ 5,000' },
    { measure: 'orders/s (100 bots, closed loop)', value: orders_per_s, target: '≥ 50,000' },
    { measure: 'fan-out messages/s delivered', value: fanout_msgs_per_s, target: '≥ 1,000,000' },
    { measure: 'bare uWS echo p50 (µs)', value: echo_rtt_p50_us, target: '' },
    { measure: 'order p50 / echo p50', value: rtt_ratio_vs_echo, target: '≤ 3' },
    { measure: `bare echo, ${BOTS} bots closed loop: round trips/s`, value: echo_bots_msgs_per_s, target: '(ceiling)' },
    { measure: `bare echo, ${BOTS} bots: p50 (µs)`, value: echo_bots_rtt_p50_us, target: '' },
    { measure: `bare echo, ${BOTS} bots: p99 (µs)`, value: echo_bots_rtt_p99_us, target: '' },
    { measure: 'orders/s ÷ echo round trips/s (same bots)', value: Math.round((orders_per_s / echo_bots_msgs_per_s) * 100) / 100, target: '' },
  ]);
  console.log(`orders: ${orders.rtt_us.length} in ${Math.round(orders.elapsed_ms)} ms, ${orders.rejects} rejected; fan-out: ${fan.frames} frames in ${Math.round(fan.elapsed_ms)} ms`);
  writeResults('gateway', { order_rtt_p50_us, order_rtt_p99_us, orders_per_s, fanout_msgs_per_s, echo_rtt_p50_us, rtt_ratio_vs_echo, echo_bots_msgs_per_s, echo_bots_rtt_p50_us, echo_bots_rtt_p99_us }, {
    setup: { bots: BOTS, orders_per_bot: ORDERS_PER_BOT, subscribers: SUBSCRIBERS, fanout_updates: FANOUT_UPDATES, engine: 'engine core in-process (no journal)', ledger: 'none', clients: 'one worker thread' },
  });

  await gw.close();
  server.close();
  await sql.end({ timeout: 2 });
  await admin.unsafe(`drop database if exists ${dbName} with (force)`);
  await admin.end({ timeout: 2 });
  await embedded?.stop();
  if (embeddedDir !== undefined) rmSync(embeddedDir, { recursive: true, force: true });
  process.exit(0);
}
