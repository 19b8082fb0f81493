// `npm run bench -- gateway`: the WebSocket path on loopback (issue 6).
//   order  100 concurrent bots (the lean raw-socket client below, in worker threads) each send
//          place → wait for its ack (closed loop; --inflight K keeps K in flight), for
//          ORDERS_PER_BOT orders or MAX_ORDER_PHASE_MS; buys and sells cross so most orders fill
//          (the taker's ack carries its fills, so order→fill for the taker = the ack round trip).
//   fanout 1,000 subscribers (raw-socket frame counters in the worker) on one book channel; the
//          main thread drives book changes through the engine; counts frames delivered per second.
//   echo   the floor: a bare uWS echo server driven by the same bots, client and loop (and by one
//          connection), same machine, same run.
// The server side is the real gateway (attachGateway on startHttpServer) with the engine core
// in-process (createCoreBackend), no ledger unless --ledger; PostgreSQL from DATABASE_URL or
// embedded. The server thread's CPU per order (/proc) is the figure for A/B decisions; the client
// thread's own CPU per order is printed next to it (client_cpu_us_per_order: the lean client builds
// every bot's frames before the clock starts, so inside the window it only writes, reads and parses
// frame headers — mostly kernel time, about what it costs against the bare echo).
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect as netConnect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, chmodSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { printTable, writeResults } from './report.js';
import { startProfile } from './profile.js';

// Options (defaults are the issue's setup):
//   --bots N            concurrent trading bots (100)
//   --orders-per-bot N  orders each bot sends (600)
//   --inflight K        orders a bot keeps in flight (1 = closed loop: send, wait for the ack, send)
//   --client-threads N  worker threads the bots are spread over (1)
//   --client ws         the old client: `ws` package bots (slow: its own ceiling is far below the server's)
//   --ledger            an in-memory ledger: buys are held, fills escrowed (funds CPU on the order path)
//   --no-fanout         skip the fan-out phase
//   --profile FILE      write a V8 CPU profile of the server thread during the order phase
//   --profile-batch FILE  the same for the --batch phase
//   --batch N           after the single-order phase (still the headline), a second phase with the
//                       same bots sending place_batch frames of N orders (closed loop per batch;
//                       --inflight applies to batches), reported next to it as batch_* figures
const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const BOTS = Number(argValue('--bots') ?? 100);
const ORDERS_PER_BOT = Number(argValue('--orders-per-bot') ?? 600);
const INFLIGHT = Math.max(1, Number(argValue('--inflight') ?? 1));
const CLIENT_THREADS = Math.max(1, Number(argValue('--client-threads') ?? 1));
const CLIENT: 'lean' | 'ws' = argValue('--client') === 'ws' ? 'ws' : 'lean';
const WITH_LEDGER = process.argv.includes('--ledger');
const PROFILE = argValue('--profile');
const PROFILE_BATCH = argValue('--profile-batch');
const FANOUT = !process.argv.includes('--no-fanout');
const BATCH = Math.max(0, Math.floor(Number(argValue('--batch') ?? 0)));
const MAX_ORDER_PHASE_MS = 15_000;
const SUBSCRIBERS = 1000;
const FANOUT_UPDATES = 2000;
const ECHO_ROUND_TRIPS = 20_000;

interface WorkerJob {
  kind: 'orders' | 'echo' | 'echo_bots' | 'fanout';
  client?: 'lean' | 'ws';
  bots?: number;
  /** Index of this worker's first bot (bots are numbered across client threads). */
  first_bot?: number;
  inflight?: number;
  port: number;
  zone_id?: number;
  interval_id?: number;
  creds?: { key_id: string; secret: string }[];
  expected?: number;
  orders_per_bot?: number;
  /** Orders per place_batch frame (0: single places). */
  batch?: number;
}

interface RunResult {
  rtt_us: number[];
  elapsed_ms: number;
  rejects?: number;
  /** CPU time of the client worker thread(s) during the measured loop, ms (lean client; Linux /proc). */
  client_cpu_ms?: number;
}

/** CPU time (user + system) of the calling thread, ms (Linux /proc/thread-self; 10 ms ticks), NaN elsewhere. */
function threadCpuMs(): number {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** The bench's order for bot b, its i-th order: buys and sells cross around 0.1000 so most fill. */
function orderJson(b: number, i: number, zone_id: number, interval_id: number, tag = 'o'): string {
  const sell = (b + i) % 2 === 0;
  const price = sell ? 1000 + ((i * 7 + b) % 20) : 1010 - ((i * 5 + b) % 20);
  return `{"type":"place","req_id":${i},"zone_id":${zone_id},"interval_id":${interval_id},"client_order_id":"b${b}${tag}${i}","side":"${sell ? 'SELL' : 'BUY'}","source":"${sell ? 'SOLAR' : 'ANY'}","order_type":"${i % 4 === 3 ? 'IOC' : 'LIMIT'}","price":"0.${String(price).padStart(4, '0')}","qty":"${1 + (i % 5)}.000"}`;
}

// ---------------------------------------------------------------------------------------------
// The lean client: raw TCP sockets, hand-built WebSocket frames, minimal parsing.
// Client frames are masked as the protocol requires, with a zero masking key (valid WebSocket;
// the payload bytes stay as they are, so no XOR pass). Server frames are read only as far as
// needed: opcode, length, and for text frames the first bytes of the payload (`{"type":"ack"`,
// `{"type":"reject"`) and the req_id that follows it (the gateway's JSON has type, then req_id).

const ZERO_MASK_TEXT = 0x81;

/** Bot b's j-th place_batch frame payload: its orders j·n … j·n+n−1 (each the order above without its type, keeping its own req_id). */
function batchJson(b: number, j: number, n: number, zone_id: number, interval_id: number): string {
  const items: string[] = [];
  for (let i = j * n; i < (j + 1) * n; i++) items.push(orderJson(b, i, zone_id, interval_id, 'x').replace('"type":"place",', ''));
  return `{"type":"place_batch","req_id":${j},"orders":[${items.join(',')}]}`;
}

/** One masked text frame holding `payload` (ASCII). */
function textFrame(payload: string): Buffer {
  const n = payload.length;
  const hdr = n < 126 ? 6 : n < 65536 ? 8 : 14;
  const b = Buffer.allocUnsafe(hdr + n);
  b[0] = ZERO_MASK_TEXT;
  if (n < 126) b[1] = 0x80 | n;
  else if (n < 65536) {
    b[1] = 0x80 | 126;
    b.writeUInt16BE(n, 2);
  } else {
    b[1] = 0x80 | 127;
    b.writeBigUInt64BE(BigInt(n), 2);
  }
  b.writeUInt32BE(0, hdr - 4);
  b.write(payload, hdr, 'latin1');
  return b;
}

const Q = 0x22; // "
const TYPE_PREFIX = Buffer.from('{"type":"');
const REQ_ID_AT_ACK = '{"type":"ack","req_id":'.length;
const REQ_ID_AT_REJECT = '{"type":"reject","req_id":'.length;
const BATCH_PREFIX = Buffer.from('{"type":"batch","req_id":');
const REJECTED = Buffer.from('"rejected":');

interface LeanWs {
  sock: Socket;
  send(frame: Buffer): void;
  /** Called per server text frame with the frame's bytes [start, end) in buf. */
  onText: (buf: Buffer, start: number, end: number) => void;
  close(): void;
}

function leanConnect(port: number, path: string): Promise<LeanWs> {
  return new Promise((resolve, reject) => {
    const sock = netConnect(port, '127.0.0.1');
    sock.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    let upgraded = false;
    const ws: LeanWs = {
      sock,
      send: (f) => void sock.write(f),
      onText: () => {},
      close: () => sock.destroy(),
    };
    sock.on('error', reject);
    sock.on('connect', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString('latin1').includes(' 101')) return reject(new Error(`upgrade refused: ${buf.subarray(0, end).toString()}`));
        upgraded = true;
        buf = buf.subarray(end + 4);
        resolve(ws);
      }
      let off = 0;
      const len = buf.length;
      while (len - off >= 2) {
        const op = buf[off] & 0x0f;
        let n = buf[off + 1] & 0x7f;
        let h = 2;
        if (n === 126) {
          if (len - off < 4) break;
          n = buf.readUInt16BE(off + 2);
          h = 4;
        } else if (n === 127) {
          if (len - off < 10) break;
          n = Number(buf.readBigUInt64BE(off + 2));
          h = 10;
        }
        if (len - off < h + n) break;
        if (op === 1) ws.onText(buf, off + h, off + h + n);
        off += h + n;
      }
      buf = off === len ? Buffer.alloc(0) : buf.subarray(off);
    });
  });
}

/** 'a' (ack), 'r' (reject), 'l' (logged_in) …: the first letter of the message type, or 0. */
function typeLetter(buf: Buffer, start: number, end: number): number {
  if (end - start < 10) return 0;
  for (let k = 0; k < 9; k++) if (buf[start + k] !== TYPE_PREFIX[k]) return 0;
  return buf[start + 9];
}

function readInt(buf: Buffer, at: number, end: number): number {
  let v = 0;
  for (let k = at; k < end; k++) {
    const c = buf[k];
    if (c < 0x30 || c > 0x39) break;
    v = v * 10 + (c - 0x30);
  }
  return v;
}

async function leanMain(job: WorkerJob): Promise<RunResult> {
  const A = 0x61;
  const R = 0x72;
  const L = 0x6c;
  if (job.kind === 'echo') {
    const ws = await leanConnect(job.port, '/');
    const frame = textFrame('{"type":"ping","req_id":1}');
    const rtt: number[] = [];
    const started = performance.now();
    await new Promise<void>((resolve) => {
      let t0 = 0;
      ws.onText = () => {
        rtt.push((performance.now() - t0) * 1000);
        if (rtt.length >= ECHO_ROUND_TRIPS) return resolve();
        t0 = performance.now();
        ws.send(frame);
      };
      t0 = performance.now();
      ws.send(frame);
    });
    ws.close();
    return { rtt_us: rtt, elapsed_ms: performance.now() - started };
  }
  const n = job.bots ?? 100;
  const first = job.first_bot ?? 0;
  const per = job.orders_per_bot ?? ORDERS_PER_BOT;
  const inflight = job.inflight ?? 1;
  const echo = job.kind === 'echo_bots';
  const conns = await Promise.all(Array.from({ length: n }, () => leanConnect(job.port, echo ? '/' : '/ws')));
  if (!echo) {
    const { loginMessage } = await import('../gateway/auth.js');
    await Promise.all(conns.map((ws, k) => new Promise<void>((resolve) => {
      ws.onText = (buf, s, e) => {
        if (typeLetter(buf, s, e) === L) resolve();
      };
      const c = job.creds![k];
      ws.send(textFrame(JSON.stringify(loginMessage({ key_id: c.key_id, algorithm: 'HMAC_SHA256', secret: c.secret }))));
    })));
  }
  // Every bot's frames are built before the clock starts (the same bytes as built on the fly, one
  // buffer per bot, sent as views of it): what the server receives is unchanged, and the client
  // thread, which shares the 2 cores with the server, spends less per order inside the window.
  // With --batch N a frame is one place_batch of N orders: `per` counts frames from here on.
  const batchN = echo ? 0 : job.batch ?? 0;
  const frames = batchN > 0 ? Math.floor(per / batchN) : per;
  const prebuilt = conns.map((_, k) => {
    const parts = Array.from({ length: frames }, (_, i) => textFrame(batchN > 0 ? batchJson(first + k, i, batchN, job.zone_id ?? 1, job.interval_id ?? 1) : orderJson(first + k, i, job.zone_id ?? 1, job.interval_id ?? 1)));
    const at = new Uint32Array(frames + 1);
    for (let i = 0; i < frames; i++) at[i + 1] = at[i] + parts[i].length;
    return { all: Buffer.concat(parts), at };
  });
  // Tell the parent we are connected (and logged in): the clock starts when every worker is.
  parentPort!.postMessage({ ready: true });
  await new Promise<void>((r) => parentPort!.once('message', () => r()));
  const rtt: number[] = [];
  let rejects = 0;
  const cpu0 = threadCpuMs();
  const started = performance.now();
  await Promise.all(conns.map((ws, k) => new Promise<void>((resolve) => {
    const sentAt = new Float64Array(frames);
    const { all, at } = prebuilt[k];
    let next = 0;
    let done = 0;
    const sendOne = (): void => {
      const i = next++;
      sentAt[i] = performance.now();
      // echo: the same bytes as an order, answered by the echo server with themselves
      ws.send(all.subarray(at[i], at[i + 1]));
    };
    const refill = (): void => {
      while (next < frames && next - done < inflight && performance.now() - started < MAX_ORDER_PHASE_MS) sendOne();
      if (next === done) resolve();
    };
    ws.onText = (buf, s, e) => {
      let i: number;
      if (echo) {
        // the echoed order: its req_id is at a fixed place too
        i = readInt(buf, s + '{"type":"place","req_id":'.length, e);
      } else if (batchN > 0) {
        // one reply frame per batch: every order of it is answered (ack or reject) at this moment
        if (e - s < BATCH_PREFIX.length || buf.compare(BATCH_PREFIX, 0, BATCH_PREFIX.length, s, s + BATCH_PREFIX.length) !== 0) return;
        i = readInt(buf, s + BATCH_PREFIX.length, e);
        const r = buf.indexOf(REJECTED, s);
        if (r >= 0 && r < e) rejects += readInt(buf, r + REJECTED.length, e);
        const us = (performance.now() - sentAt[i]) * 1000;
        for (let q = 0; q < batchN; q++) rtt.push(us);
        done++;
        refill();
        return;
      } else {
        const t = typeLetter(buf, s, e);
        if (t === A) i = readInt(buf, s + REQ_ID_AT_ACK, e);
        else if (t === R) {
          if (buf[s + REQ_ID_AT_REJECT] === Q || buf[s + REQ_ID_AT_REJECT] === 0x6e) return; // not an order's reply
          i = readInt(buf, s + REQ_ID_AT_REJECT, e);
          rejects++;
        } else return; // private stream (order, fill, balance), heartbeats
      }
      rtt.push((performance.now() - sentAt[i]) * 1000);
      done++;
      refill();
    };
    refill();
  })));
  const elapsed_ms = performance.now() - started;
  const client_cpu_ms = threadCpuMs() - cpu0;
  for (const ws of conns) ws.close();
  return { rtt_us: rtt, elapsed_ms, rejects, client_cpu_ms };
}

// ---------------------------------------------------------------------------------------------
// Worker side: clients.

async function workerMain(job: WorkerJob): Promise<void> {
  if (job.kind !== 'fanout' && job.client !== 'ws') {
    parentPort!.postMessage(await leanMain(job));
    return;
  }
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
    parentPort!.postMessage({ ready: true });
    await new Promise<void>((r) => parentPort!.once('message', () => r()));
    const rtt: number[] = [];
    const started = performance.now();
    await Promise.all(clients.map((ws, b) => new Promise<void>((resolve) => {
      let i = 0;
      let t0 = 0;
      const next = (): void => {
        if (i >= per || performance.now() - started > MAX_ORDER_PHASE_MS) return resolve();
        t0 = performance.now();
        ws.send(orderJson(b, i, 1, 1));
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
    parentPort!.postMessage({ ready: true });
    await new Promise<void>((r) => parentPort!.once('message', () => r()));
    const rtt: number[] = [];
    let rejects = 0;
    const started = performance.now();
    await Promise.all(bots.map((ws, b) => new Promise<void>((resolve) => {
      let i = 0;
      let t0 = 0;
      const sendNext = (): void => {
        if (i >= (job.orders_per_bot ?? ORDERS_PER_BOT) || performance.now() - started > MAX_ORDER_PHASE_MS) return resolve();
        t0 = performance.now();
        ws.send(orderJson(b, i, job.zone_id!, job.interval_id!));
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

/** CPU time of this process's main thread, ms: user, system (Linux /proc; 10 ms ticks). */
function mainThreadTimes(): { user: number; system: number } {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) * 10, system: Number(f[12]) * 10 }; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return { user: Number.NaN, system: Number.NaN };
  }
}
function mainThreadCpuMs(): number {
  const t = mainThreadTimes();
  return t.user + t.system;
}

/** Runs a client job over `threads` workers (bots split between them); the clock starts in all at once. */
async function runClients(job: WorkerJob, threads: number, onGo?: () => Promise<void>): Promise<RunResult> {
  const n = job.bots ?? BOTS;
  const t = Math.min(threads, n);
  const ready: Worker[] = [];
  let release!: () => void;
  const allReady = new Promise<void>((r) => (release = r));
  const parts = Array.from({ length: t }, (_, w) => {
    const from = Math.floor((w * n) / t);
    const to = Math.floor(((w + 1) * n) / t);
    return runWorker<RunResult>({ ...job, bots: to - from, first_bot: from, creds: job.creds?.slice(from, to) }, (wk) => {
      ready.push(wk);
      if (ready.length === t) release();
    });
  });
  await allReady;
  await onGo?.();
  for (const w of ready) w.postMessage('go');
  const results = await Promise.all(parts);
  return {
    rtt_us: results.flatMap((r) => r.rtt_us),
    elapsed_ms: Math.max(...results.map((r) => r.elapsed_ms)),
    rejects: results.reduce((x, r) => x + (r.rejects ?? 0), 0),
    client_cpu_ms: results.reduce((x, r) => x + (r.client_cpu_ms ?? Number.NaN), 0),
  };
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
  const userIds: number[] = [];
  for (let b = 0; b < BOTS; b++) {
    const [usr] = await sql`insert into users (email, name, role) values (${`bot${b}@bench.kwx`}, ${`bot${b}`}, 'PROSUMER') returning id`;
    userIds.push(Number(usr.id));
    const k = await createApiKey(sql, { user_id: Number(usr.id), algorithm: 'HMAC_SHA256' });
    creds.push({ key_id: k.key_id, secret: k.secret! });
  }
  const core = createCoreBackend();
  core.addZone({ zone_id, price_step_ticks: 1, lot_wh: 1, band_min_ticks: 0, band_max_ticks: 100_000, min_qty_wh: 1, max_qty_wh: 1_000_000_000, max_open_orders_per_user: 1_000_000 });
  core.openInterval(zone_id, interval_id, 1e15);
  const metrics = createMetricsRegistry();
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, metrics, version: 'bench' });
  let ledger: InstanceType<typeof import('../ledger/ledger.js').Ledger> | undefined;
  if (WITH_LEDGER) {
    const { Ledger } = await import('../ledger/ledger.js');
    ledger = new Ledger();
  }
  const gw = await attachGateway({
    app: server.app, sql, metrics, backend: core, ledger,
    limits: { max_connections: 5000, key_orders_burst: 1e9, key_orders_per_s: 1e9, conn_msgs_burst: 1e9, conn_msgs_per_s: 1e9, disconnect_buffered_bytes: 64 * 1024 * 1024 },
  });

  if (ledger !== undefined) {
    // Every bot gets 1,000,000.00 EUR: buys are held, fills escrowed (no store: nothing waits for PostgreSQL).
    const now = Date.now();
    for (const [k, id] of userIds.entries()) {
      ledger.openUserAccounts(id, 'EUR', now);
      ledger.deposit({ transfer_id: `bench-${k}`, user_id: id, currency: 'EUR', amount_minor: 100_000_000n }, now);
    }
  }

  // Echo floor: a bare uWS echo server, same client, same machine — one connection, and the same
  // bots (same client threads, same closed loop, same order-sized frames).
  const uws = loadUws();
  const echoApp = uws.App();
  echoApp.ws('/*', { message: (ws, msg, isBinary) => void ws.send(msg, isBinary) });
  const echoPort = await new Promise<number>((resolve) => echoApp.listen('127.0.0.1', 0, (s) => resolve(uws.us_socket_local_port(s as never))));
  const echo = await runWorker<RunResult>({ kind: 'echo', client: CLIENT, port: echoPort });
  const clientThreads = CLIENT === 'ws' ? 1 : CLIENT_THREADS;
  const echoBots = await runClients({ kind: 'echo_bots', client: CLIENT, port: echoPort, bots: BOTS, orders_per_bot: ORDERS_PER_BOT, inflight: INFLIGHT }, clientThreads);

  // Orders. The measurement window (server CPU, profile) opens when every bot is connected and logged in.
  const placeStats = async () => {
    const dur = (await metrics.getSingleMetric('kwx_ws_message_duration_seconds')!.get()).values;
    const sum = dur.find((v) => (v as { metricName?: string }).metricName === 'kwx_ws_message_duration_seconds_sum' && v.labels.type === 'place')?.value ?? 0;
    const count = dur.find((v) => (v as { metricName?: string }).metricName === 'kwx_ws_message_duration_seconds_count' && v.labels.type === 'place')?.value ?? 0;
    return { sum, count };
  };
  let place0 = await placeStats();
  let elu0 = performance.eventLoopUtilization();
  let cpu0 = process.cpuUsage();
  let main0 = mainThreadCpuMs();
  let sys0 = mainThreadTimes().system;
  let stopProfile: (() => Promise<void>) | null = null;
  const orderJob: WorkerJob = { kind: 'orders', client: CLIENT, port: server.port, zone_id, interval_id, creds, bots: BOTS, orders_per_bot: ORDERS_PER_BOT, inflight: INFLIGHT };
  const orders = await runClients(orderJob, clientThreads, async () => {
    if (PROFILE !== undefined) {
      const { Session } = await import('node:inspector');
      const { writeFileSync } = await import('node:fs');
      const session = new Session();
      session.connect();
      const post = (m: string, p?: object) => new Promise<unknown>((res, rej) => session.post(m, p ?? {}, (e, r) => (e ? rej(e) : res(r))));
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: 100 });
      await post('Profiler.start');
      stopProfile = async () => {
        const r = (await post('Profiler.stop')) as { profile: unknown };
        writeFileSync(PROFILE, JSON.stringify(r.profile));
        session.disconnect();
        console.log(`order phase: server-thread CPU profile written to ${PROFILE}`);
      };
    }
    place0 = await placeStats();
    elu0 = performance.eventLoopUtilization();
    cpu0 = process.cpuUsage();
    main0 = mainThreadCpuMs();
    sys0 = mainThreadTimes().system;
  });
  const mainCpuMs = mainThreadCpuMs() - main0;
  const mainSysMs = mainThreadTimes().system - sys0;
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  if (stopProfile !== null) await (stopProfile as () => Promise<void>)();
  const place1 = await placeStats();
  const n_orders = orders.rtt_us.length;
  const server_busy_us_per_order = Math.round((elu.active * 1000) / Math.max(1, n_orders) * 10) / 10;
  const server_cpu_us_per_order = Math.round((mainCpuMs * 1000) / Math.max(1, n_orders) * 10) / 10;
  console.log(`order phase: ${n_orders} orders in ${Math.round(orders.elapsed_ms)} ms, ${orders.rejects} rejected; client: ${CLIENT === 'lean' ? `lean raw-socket client, ${clientThreads} thread(s)` : 'ws package, 1 thread'}, ${BOTS} bots, ${INFLIGHT} in flight per bot (${INFLIGHT === 1 ? 'closed loop' : 'pipelined'})`);
  const server_sys_us_per_order = Math.round((mainSysMs * 1000) / Math.max(1, n_orders) * 10) / 10;
  console.log(`order phase: server thread CPU ${server_cpu_us_per_order} µs per order, of which system ${server_sys_us_per_order} µs (/proc thread time; system = socket reads/writes, incl. the kernel's loopback TCP work)`);
  const client_cpu_us_per_order = Math.round(((orders.client_cpu_ms ?? Number.NaN) * 1000) / Math.max(1, n_orders) * 10) / 10;
  const echo_client_cpu_us_per_msg = Math.round(((echoBots.client_cpu_ms ?? Number.NaN) * 1000) / Math.max(1, echoBots.rtt_us.length) * 10) / 10;
  console.log(`order phase: client thread(s) CPU ${client_cpu_us_per_order} µs per order (the same client against the bare echo: ${echo_client_cpu_us_per_msg} µs per round trip)`);
  console.log(`order phase: server thread busy ${server_busy_us_per_order} µs per order (event-loop utilisation ${(elu.utilization * 100).toFixed(0)}% of ${Math.round(elu.idle + elu.active)} ms); process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms (all threads, clients included)`);
  console.log(`order phase: mean time per place in the server, message in → ack queued: ${(((place1.sum - place0.sum) / Math.max(1, place1.count - place0.count)) * 1e6).toFixed(0)} µs (wall, includes waits)`);

  // Batched entry (--batch N): the same bots, place_batch frames of N orders, after the single-order phase.
  let batchFigures: Record<string, number> = {};
  if (BATCH > 0) {
    if (CLIENT !== 'lean') throw new Error('--batch needs the lean client');
    let bMain0 = 0;
    let bSys0 = 0;
    let stopBatchProfile: (() => Promise<void>) | null = null;
    const b = await runClients({ ...orderJob, batch: BATCH }, clientThreads, async () => {
      if (PROFILE_BATCH !== undefined) stopBatchProfile = await startProfile(PROFILE_BATCH);
      bMain0 = mainThreadCpuMs();
      bSys0 = mainThreadTimes().system;
    });
    const bCpuMs = mainThreadCpuMs() - bMain0;
    const bSysMs = mainThreadTimes().system - bSys0;
    if (stopBatchProfile !== null) await (stopBatchProfile as () => Promise<void>)();
    const n = b.rtt_us.length;
    batchFigures = {
      batch_size: BATCH,
      batch_orders_per_s: Math.round((n / b.elapsed_ms) * 1000),
      batch_order_rtt_p50_us: pct(b.rtt_us, 50),
      batch_order_rtt_p99_us: pct(b.rtt_us, 99),
      batch_server_cpu_us_per_order: Math.round((bCpuMs * 1000) / Math.max(1, n) * 10) / 10,
      batch_server_sys_us_per_order: Math.round((bSysMs * 1000) / Math.max(1, n) * 10) / 10,
      batch_client_cpu_us_per_order: Math.round(((b.client_cpu_ms ?? Number.NaN) * 1000) / Math.max(1, n) * 10) / 10,
    };
    console.log(`batch phase: ${n} orders in ${n / BATCH} place_batch frames of ${BATCH} in ${Math.round(b.elapsed_ms)} ms, ${b.rejects} rejected; ${BOTS} bots, ${INFLIGHT} batch(es) in flight per bot`);
    console.log(`batch phase: server thread CPU ${batchFigures.batch_server_cpu_us_per_order} µs per order, of which system ${batchFigures.batch_server_sys_us_per_order} µs; client ${batchFigures.batch_client_cpu_us_per_order} µs per order`);
  }

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
  const orders_per_s = Math.round((n_orders / orders.elapsed_ms) * 1000);
  const fanout_msgs_per_s = Math.round((fan.frames / Math.max(1, fan.elapsed_ms)) * 1000);
  const echo_single_rtt_p50_us = pct(echo.rtt_us, 50);
  const echo_bots_msgs_per_s = Math.round((echoBots.rtt_us.length / echoBots.elapsed_ms) * 1000);
  const echo_rtt_p50_us = pct(echoBots.rtt_us, 50);
  const echo_bots_rtt_p99_us = pct(echoBots.rtt_us, 99);
  const rtt_ratio_vs_echo = Math.round((order_rtt_p50_us / echo_rtt_p50_us) * 100) / 100;
  const rtt_ratio_vs_single_echo = Math.round((order_rtt_p50_us / echo_single_rtt_p50_us) * 100) / 100;
  printTable(`gateway (loopback, ${BOTS} bots × ${INFLIGHT} in flight, ${SUBSCRIBERS.toLocaleString('en-US')} subscribers)`, [
    { measure: 'order round trip p50 (µs)', value: order_rtt_p50_us, target: '' },
    { measure: 'order round trip p99 (µs)', value: order_rtt_p99_us, target: '≤ 5,000' },
    { measure: 'orders/s', value: orders_per_s, target: '≥ 50,000' },
    { measure: 'fan-out messages/s delivered', value: fanout_msgs_per_s, target: '≥ 1,000,000' },
    { measure: `bare echo, same ${BOTS} bots: p50 (µs)`, value: echo_rtt_p50_us, target: '' },
    { measure: 'order p50 / echo p50 (same bots)', value: rtt_ratio_vs_echo, target: '≤ 3' },
    { measure: `bare echo, same ${BOTS} bots: round trips/s`, value: echo_bots_msgs_per_s, target: '(client+loopback floor)' },
    { measure: `bare echo, same ${BOTS} bots: p99 (µs)`, value: echo_bots_rtt_p99_us, target: '' },
    { measure: 'bare echo, one connection: p50 (µs)', value: echo_single_rtt_p50_us, target: '' },
    { measure: 'order p50 / one-connection echo p50', value: rtt_ratio_vs_single_echo, target: '' },
    { measure: 'server thread CPU per order (µs)', value: server_cpu_us_per_order, target: '' },
    { measure: 'server thread busy (ELU) per order (µs)', value: server_busy_us_per_order, target: '' },
    ...(BATCH > 0
      ? [
        { measure: `batched entry (place_batch of ${BATCH}): orders/s`, value: batchFigures.batch_orders_per_s, target: '(not the headline)' },
        { measure: `batched entry: order round trip p50 (µs)`, value: batchFigures.batch_order_rtt_p50_us, target: '' },
        { measure: `batched entry: order round trip p99 (µs)`, value: batchFigures.batch_order_rtt_p99_us, target: '' },
        { measure: 'batched entry: server thread CPU per order (µs)', value: batchFigures.batch_server_cpu_us_per_order, target: '' },
      ]
      : []),
  ]);
  if (FANOUT) console.log(`fan-out: ${fan.frames} frames in ${Math.round(fan.elapsed_ms)} ms`);
  writeResults('gateway', {
    order_rtt_p50_us, order_rtt_p99_us, orders_per_s, fanout_msgs_per_s, echo_rtt_p50_us, rtt_ratio_vs_echo,
    echo_bots_msgs_per_s, echo_bots_rtt_p99_us, echo_single_rtt_p50_us, rtt_ratio_vs_single_echo, server_cpu_us_per_order, server_sys_us_per_order, server_busy_us_per_order,
    client_cpu_us_per_order, echo_client_cpu_us_per_msg, ...batchFigures,
  }, {
    setup: {
      bots: BOTS, orders_per_bot: ORDERS_PER_BOT, inflight_per_bot: INFLIGHT, loop: INFLIGHT === 1 ? 'closed (send, wait for the ack, send)' : `pipelined (${INFLIGHT} orders in flight per bot)`,
      subscribers: SUBSCRIBERS, fanout_updates: FANOUT_UPDATES, engine: 'engine core in-process (no journal)', ledger: WITH_LEDGER ? 'in-memory Ledger (no store)' : 'none',
      clients: CLIENT === 'lean' ? `lean raw-socket WebSocket client, ${clientThreads} worker thread(s)` : '`ws` package, one worker thread',
      echo_rtt_p50_us: 'bare uWS echo driven by the same bots and client in the same closed loop (echo_single_rtt_p50_us: one connection)',
      load_average: loadavg().map((x) => Math.round(x * 100) / 100),
    },
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
