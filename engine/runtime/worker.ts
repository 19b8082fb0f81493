// A zone worker: a long-lived worker thread that owns the engines of its zones (single writer
// per zone). It applies batches of sequenced commands in order, encodes each command and its
// events as a journal row (binary COPY tuple) and sends the whole batch back in one message.
// It never touches PostgreSQL on the hot path; it reads the journal only to recover a zone.
import { parentPort } from 'node:worker_threads';
import type { Command, EngineEvent } from '../core/types.js';
import { CopyTupleWriter, encodeCheckpointPayload, encodeCommandPayload, encodeState, JOURNAL_KIND_CHECKPOINT, JOURNAL_KIND_COMMAND } from './codec.js';
import type { RuntimeZoneEngine } from './engine-port.js';
import type { FromWorker, SnapshotOut, ToWorker, WorkItem } from './protocol.js';
import { recoverZone } from './recovery.js';

if (parentPort === null) throw new Error('engine/runtime/worker.js must run as a worker thread');
const port = parentPort;
const zones = new Map<number, RuntimeZoneEngine>();
const writer = new CopyTupleWriter(256 * 1024);

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

function runBatch(items: (number | WorkItem)[]): void {
  const results: (number | EngineEvent[])[] = new Array(items.length);
  const snapshots: SnapshotOut[] = [];
  for (let i = 0; i < items.length; i += 3) {
    const zone_id = items[i] as number;
    const seq = items[i + 1] as number;
    const item = items[i + 2] as WorkItem;
    const engine = zones.get(zone_id);
    if (engine === undefined) throw new Error(`worker does not own zone ${zone_id}`);
    results[i] = zone_id;
    results[i + 1] = seq;
    if (item.type === 'CHECKPOINT') {
      const state_hash = engine.stateHash();
      writer.append(zone_id, seq, JOURNAL_KIND_CHECKPOINT, encodeCheckpointPayload(state_hash), item.ts_ms);
      snapshots.push({ zone_id, seq, state: encodeState(engine.serialize()), state_hash });
      results[i + 2] = [];
    } else {
      engine.execute(item as Command);
      const events = engine.events();
      writer.append(zone_id, seq, JOURNAL_KIND_COMMAND, encodeCommandPayload(item as Command, events), item.ts_ms);
      results[i + 2] = events;
    }
  }
  const rows = writer.rows;
  const bytes = writer.take();
  post(
    {
      t: 'result',
      bytes,
      rows,
      first_zone_id: items[0] as number,
      first_seq: items[1] as number,
      results,
      snapshots,
    },
    [bytes.buffer as ArrayBuffer, ...snapshots.map((s) => s.state.buffer as ArrayBuffer)],
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
      runBatch(msg.items);
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
