// A zone worker: a long-lived worker thread that owns the engines of its zones (single writer
// per zone). It applies batches of sequenced commands in order (one binary buffer per batch, the
// commands already in journal encoding), appends each command's bytes and its events as a journal
// row (binary COPY tuple) and sends the whole batch back in one message.
// It never touches PostgreSQL on the hot path; it reads the journal only to recover a zone.
import { parentPort } from 'node:worker_threads';
import { ByteReader, CopyTupleWriter, encodeState, JOURNAL_KIND_CHECKPOINT } from './codec.js';
import type { RuntimeZoneEngine } from './engine-port.js';
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

function runBatch(input: Uint8Array, rows: number): void {
  const index = new Float64Array(rows * ROW_FIELDS);
  const snapshots: SnapshotOut[] = [];
  const r = batchReader.reset(input, 0);
  let first_zone_id = 0;
  let first_seq = 0;
  for (let row = 0; row < rows; row++) {
    const zone_id = r.varint();
    const seq = r.varint();
    const ts_ms = r.float64();
    const kind = r.byte();
    if (row === 0) {
      first_zone_id = zone_id;
      first_seq = seq;
    }
    const engine = zones.get(zone_id);
    if (engine === undefined) throw new Error(`worker does not own zone ${zone_id}`);
    const x = row * ROW_FIELDS;
    index[x] = zone_id;
    index[x + 1] = seq;
    index[x + 4] = ts_ms;
    if (kind === JOURNAL_KIND_CHECKPOINT) {
      const state_hash = engine.stateHash();
      writer.appendCheckpoint(zone_id, seq, state_hash, ts_ms);
      snapshots.push({ zone_id, seq, state: encodeState(engine.serialize()), state_hash });
      index[x + 3] = -1;
    } else {
      const from = r.o;
      const cmd = r.command(zone_id, ts_ms);
      const to = r.o;
      engine.execute(cmd);
      const at = writer.appendEngineCommand(zone_id, seq, ts_ms, input, from, to, engine);
      index[x + 2] = at;
      index[x + 3] = writer.byteLength - at - 12;
      index[x + 5] = writer.eventsAt;
      index[x + 6] = cmd.type === 'PLACE' ? 1 : 0;
    }
  }
  const count = writer.rows;
  const bytes = writer.take();
  post(
    { t: 'result', bytes, rows: count, first_zone_id, first_seq, index, snapshots },
    [bytes.buffer as ArrayBuffer, index.buffer as ArrayBuffer, ...snapshots.map((s) => s.state.buffer as ArrayBuffer)],
  );
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
      has_gtt: r.engine.serialize().orders.some((o) => o.expire_at_ms > 0),
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
