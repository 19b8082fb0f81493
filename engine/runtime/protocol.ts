// Messages between the runtime (main thread) and its zone workers (worker.ts).
// Commands go in batches: one transferred buffer per batch (codec.ts CommandBatchWriter); results
// come back as one transferred buffer of binary COPY tuples for the journal plus a row index.
import type { Command, EngineSnapshot, IntervalView } from '../core/types.js';

/** Numbers per row in a result's index: see FromWorker['result'].index. */
export const ROW_FIELDS = 7;

/** A checkpoint is sequenced like a command but is not an engine command: it records the state hash. */
export interface CheckpointItem {
  type: 'CHECKPOINT';
  ts_ms: number;
}

export type WorkItem = Command | CheckpointItem;

export type ToWorker =
  /** `rows` sequenced commands encoded by CommandBatchWriter (transferred). */
  | { t: 'batch'; bytes: Uint8Array; rows: number }
  | { t: 'recover'; req: number; zone_id: number; url: string; from_scratch: boolean }
  | { t: 'dump'; req: number; zone_id: number }
  | { t: 'crash' };

export interface SnapshotOut {
  zone_id: number;
  seq: number;
  state: Uint8Array;
  state_hash: string;
  /** Open orders at the checkpoint (the runtime spaces the next one by it). */
  open_orders: number;
}

export type FromWorker =
  | {
      t: 'result';
      /** Binary COPY tuples of every row of the batch. */
      bytes: Uint8Array;
      rows: number;
      first_zone_id: number;
      first_seq: number;
      /**
       * Per row, ROW_FIELDS numbers: zone_id, seq, payload offset in bytes, payload length
       * (-1 = a checkpoint row), ts_ms, offset of the payload's event count, 1 if the command is
       * a PLACE. Events travel as the payload bytes and are decoded on the main thread after
       * commit (cheaper than a structured clone of event objects).
       */
      index: Float64Array;
    }
  /** A checkpoint's snapshot, encoded after its batch (save it once its CHECKPOINT row has committed). */
  | ({ t: 'snapshot' } & SnapshotOut)
  | {
      t: 'recovered';
      req: number;
      zone_id: number;
      last_seq: number;
      last_ts_ms: number;
      snapshot_seq: number;
      replayed_rows: number;
      checkpoints_verified: number;
      state_hash: string;
      intervals: IntervalView[];
      /** Some open order has a good-till time (the zone needs EXPIRE_DUE when idle). */
      has_gtt: boolean;
      open_orders: number;
      duration_ms: number;
    }
  | { t: 'dumped'; req: number; zone_id: number; state: EngineSnapshot; state_hash: string }
  | { t: 'failed'; req: number; zone_id: number; code: string; message: string };
