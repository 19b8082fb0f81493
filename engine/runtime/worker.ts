// A zone worker: a long-lived worker thread that owns the engines of its zones (single writer
// per zone). It applies batches of sequenced commands in order (one binary buffer per batch, the
// commands already in journal encoding), appends each command's bytes and its events as a journal
// row (binary COPY tuple) and sends the whole batch back in one message.
// It never touches PostgreSQL on the hot path; it reads the journal only to recover a zone.
import { parentPort } from 'node:worker_threads';
import { ByteReader, CopyTupleWriter, JOURNAL_KIND_CHECKPOINT } from './codec.js';
import type { RuntimeZoneEngine } from './engine-port.js';
import type { SnapshotEncoder } from '../core/engine.js';
import type { Command } from '../core/types.js';
import { ROW_FIELDS, type FromWorker, type SnapshotOut, type ToWorker } from './protocol.js';
import { recoverZone } from './recovery.js';

if (parentPort === null) throw new Error('engine/runtime/worker.js must run as a worker thread');
const port = parentPort;
const zones = new Map<number, RuntimeZoneEngine>();
const writer = new CopyTupleWriter(256 * 1024);

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

const batchReader = new ByteReader();
/** Commands run per engine.executeBatch call (it overlaps their index probes' cache misses). */
const ENGINE_GROUP = 32;
// The batch's rows, decoded before any runs (reused across batches).
let rowZone = new Float64Array(1024);
let rowSeq = new Float64Array(1024);
let rowTs = new Float64Array(1024);
let rowFrom = new Int32Array(1024);
let rowTo = new Int32Array(1024); // -1: a CHECKPOINT row
const rowCmd: Command[] = [];

function runBatch(input: Uint8Array, rows: number): void {
  const index = new Float64Array(rows * ROW_FIELDS);
  if (rows > rowZone.length) {
    let n = rowZone.length;
    while (n < rows) n *= 2;
    rowZone = new Float64Array(n);
    rowSeq = new Float64Array(n);
    rowTs = new Float64Array(n);
    rowFrom = new Int32Array(n);
    rowTo = new Int32Array(n);
  }
  // 1. decode every row (the engine gets commands in groups of the same zone)
  const r = batchReader.reset(input, 0);
  for (let row = 0; row < rows; row++) {
    rowZone[row] = r.varint();
    rowSeq[row] = r.varint();
    rowTs[row] = r.float64();
    const kind = r.byte();
    if (kind === JOURNAL_KIND_CHECKPOINT) {
      rowTo[row] = -1;
      continue;
    }
    rowFrom[row] = r.o;
    rowCmd[row] = r.command(rowZone[row], rowTs[row]);
    rowTo[row] = r.o;
  }
  // 2. run them in order: a checkpoint alone, commands in runs of one zone through executeBatch,
  //    each command's journal row written from its share of the engine's event buffer
  for (let row = 0; row < rows; ) {
    const zone_id = rowZone[row];
    const engine = zones.get(zone_id);
    if (engine === undefined) throw new Error(`worker does not own zone ${zone_id}`);
    if (rowTo[row] < 0) {
      const x = row * ROW_FIELDS;
      const seq = rowSeq[row];
      const ts_ms = rowTs[row];
      index[x] = zone_id;
      index[x + 1] = seq;
      index[x + 4] = ts_ms;
      // The checkpoint hash goes in the journal row now; the snapshot is copied now and encoded
      // between the next batches (encodeSnapshots), so the zone stalls for the copy only
      // (docs/runtime.md, "Snapshots and recovery").
      const state_hash = engine.checkpointHash();
      writer.appendCheckpoint(zone_id, seq, state_hash, ts_ms);
      encoding.push({ zone_id, seq, state_hash, open_orders: engine.openOrderCount, encoder: engine.captureSnapshot() });
      scheduleEncoding();
      index[x + 3] = -1;
      row++;
      continue;
    }
    let end = row + 1;
    while (end < rows && end - row < ENGINE_GROUP && rowTo[end] >= 0 && rowZone[end] === zone_id) end++;
    engine.executeBatch(rowCmd, row, end);
    let firstEvent = 0;
    for (let k = row; k < end; k++) {
      const endEvent = engine.batchEventEnd(k - row);
      const x = k * ROW_FIELDS;
      const at = writer.appendEngineCommand(zone_id, rowSeq[k], rowTs[k], input, rowFrom[k], rowTo[k], engine, firstEvent, endEvent);
      firstEvent = endEvent;
      index[x] = zone_id;
      index[x + 1] = rowSeq[k];
      index[x + 2] = at;
      index[x + 3] = writer.byteLength - at - 12;
      index[x + 4] = rowTs[k];
      index[x + 5] = writer.eventsAt;
      index[x + 6] = rowCmd[k].type === 'PLACE' ? 1 : 0;
    }
    row = end;
  }
  rowCmd.length = 0;
  const first_zone_id = rows > 0 ? rowZone[0] : 0;
  const first_seq = rows > 0 ? rowSeq[0] : 0;
  const count = writer.rows;
  const bytes = writer.take();
  post(
    { t: 'result', bytes, rows: count, first_zone_id, first_seq, index },
    [bytes.buffer as ArrayBuffer, index.buffer as ArrayBuffer],
  );
}

/** Checkpoint snapshots being encoded, oldest first. */
const encoding: (Omit<SnapshotOut, 'state'> & { encoder: SnapshotEncoder })[] = [];
let encodingScheduled = false;
/** Slots encoded per event-loop turn (~1–3 ms): batches that arrive meanwhile run in between. */
const ENCODE_SLOTS_PER_TURN = 4096;

function scheduleEncoding(): void {
  if (encodingScheduled) return;
  encodingScheduled = true;
  setImmediate(encodeSnapshots);
}

function encodeSnapshots(): void {
  encodingScheduled = false;
  const job = encoding[0];
  if (job === undefined) return;
  if (job.encoder.step(ENCODE_SLOTS_PER_TURN)) {
    encoding.shift();
    const state = job.encoder.bytes();
    post({ t: 'snapshot', zone_id: job.zone_id, seq: job.seq, state, state_hash: job.state_hash, open_orders: job.open_orders }, [state.buffer as ArrayBuffer]);
  }
  if (encoding.length > 0) scheduleEncoding();
}

async function recover(msg: Extract<ToWorker, { t: 'recover' }>): Promise<void> {
  try {
    const r = await recoverZone(msg.url, msg.zone_id, { from_scratch: msg.from_scratch });
    zones.set(msg.zone_id, r.engine);
    post({
      t: 'recovered',
      req: msg.req,
      zone_id: msg.zone_id,
      last_seq: r.last_seq,
      last_ts_ms: r.last_ts_ms,
      snapshot_seq: r.snapshot_seq,
      replayed_rows: r.replayed_rows,
      checkpoints_verified: r.checkpoints_verified,
      state_hash: r.state_hash,
      intervals: r.intervals,
      has_gtt: r.engine.openGoodTillTimeCount > 0,
      open_orders: r.engine.openOrderCount,
      duration_ms: r.duration_ms,
    });
  } catch (err) {
    const e = err as Error & { code?: string };
    post({ t: 'failed', req: msg.req, zone_id: msg.zone_id, code: e.code ?? 'RECOVERY_FAILED', message: e.message });
  }
}

port.on('message', (msg: ToWorker) => {
  switch (msg.t) {
    case 'batch':
      runBatch(msg.bytes, msg.rows);
      break;
    case 'recover':
      void recover(msg);
      break;
    case 'dump': {
      const e = zones.get(msg.zone_id);
      if (e === undefined) post({ t: 'failed', req: msg.req, zone_id: msg.zone_id, code: 'UNKNOWN_ZONE', message: `worker does not own zone ${msg.zone_id}` });
      else post({ t: 'dumped', req: msg.req, zone_id: msg.zone_id, state: e.serialize(), state_hash: e.stateHash() });
      break;
    }
    case 'crash':
      // Test hook: die the way a bug would (uncaught exception ends the thread).
      throw new Error('worker crash requested');
  }
});
