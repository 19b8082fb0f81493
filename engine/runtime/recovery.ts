// Recovery: a zone's engine = latest snapshot + replay of the journal tail after it.
// Every CHECKPOINT row met on the way is verified: the replayed state's hash must equal the hash
// the journal recorded at that sequence, and the snapshot itself must hash to what was recorded.
// Snapshots are binary (engine/core/snapshot.ts) or, written before 2026-12-03, msgpack of
// serialize(); hashes are checkpoint hashes ("v2:…") or, before, stateHash()es: both still verify.
import type { Sql } from '../../schema/db.js';
import type { EngineEvent, EngineSnapshot, IntervalView } from '../core/types.js';
import {
  CopyJournalReader,
  decodeCheckpointPayload,
  decodeCommand,
  decodeEvents,
  decodeState,
  JOURNAL_KIND_CHECKPOINT,
  JOURNAL_KIND_COMMAND,
  type JournalRow,
} from './codec.js';
import { createZoneEngine, restoreZoneEngine, type RuntimeZoneEngine } from './engine-port.js';
import { CHECKPOINT_HASH_PREFIX, decodeSnapshot, isBinarySnapshot } from '../core/snapshot.js';
import { connectNoDelay } from './pg.js';

export class RecoveryError extends Error {
  constructor(
    readonly code: 'RECOVERY_HASH_MISMATCH' | 'RECOVERY_SEQ_GAP' | 'RECOVERY_EVENTS_DIFFER' | 'RECOVERY_BAD_ROW',
    message: string,
  ) {
    super(message);
    this.name = 'RecoveryError';
  }
}

export interface RecoveryResult {
  engine: RuntimeZoneEngine;
  zone_id: number;
  /** Seq of the snapshot used (0 = none, replay from the start). */
  snapshot_seq: number;
  /** Last journal seq applied (0 = empty journal). */
  last_seq: number;
  last_ts_ms: number;
  /** Journal rows replayed after the snapshot. */
  replayed_rows: number;
  checkpoints_verified: number;
  state_hash: string;
  intervals: IntervalView[];
  duration_ms: number;
}

export interface RecoverOptions {
  /** Ignore snapshots: replay the whole journal (a clean replay, used to cross-check). */
  from_scratch?: boolean;
  /** Also compare every replayed command's events with the journaled ones (slow; tests). */
  verify_events?: boolean;
}

/**
 * Rebuilds one zone from the database at `url` on a connection of its own (postgres.js leaves a
 * connection unusable after a COPY TO stream, so that connection is destroyed afterwards).
 */
export async function recoverZone(url: string, zone_id: number, options: RecoverOptions = {}): Promise<RecoveryResult> {
  assertInt(zone_id);
  const sql = connectNoDelay(url, { max: 1, application: 'kwx-recovery' });
  try {
    return await recoverWith(sql, zone_id, options);
  } finally {
    await sql.end({ timeout: 0 });
  }
}

async function recoverWith(sql: Sql, zone_id: number, options: RecoverOptions): Promise<RecoveryResult> {
  const t0 = performance.now();
  let engine: RuntimeZoneEngine = createZoneEngine(zone_id);
  let snapshot_seq = 0;
  let last_ts_ms = 0;
  let checkpoints = 0;
  if (options.from_scratch !== true) {
    const snaps = await sql<{ seq: string; state: Uint8Array; state_hash: string }[]>`
      select seq, state, state_hash from engine_snapshots where zone_id = ${zone_id} order by seq desc limit 1`;
    if (snaps.length > 0) {
      const snap = snaps[0];
      snapshot_seq = Number(snap.seq);
      engine = restoreZoneEngine(isBinarySnapshot(snap.state) ? decodeSnapshot(snap.state) : decodeState<EngineSnapshot>(snap.state));
      const restored = hashLike(engine, snap.state_hash);
      if (restored !== snap.state_hash) {
        throw new RecoveryError('RECOVERY_HASH_MISMATCH', `zone ${zone_id}: snapshot at seq ${snapshot_seq} restores to hash ${restored}, recorded ${snap.state_hash}`);
      }
      const cp = await sql<{ payload: Uint8Array; ts: Date }[]>`
        select payload, ts from engine_journal where zone_id = ${zone_id} and seq = ${snapshot_seq} and kind = ${JOURNAL_KIND_CHECKPOINT}`;
      if (cp.length !== 1 || decodeCheckpointPayload(cp[0].payload) !== restored) {
        throw new RecoveryError('RECOVERY_HASH_MISMATCH', `zone ${zone_id}: snapshot at seq ${snapshot_seq} has no matching journal checkpoint`);
      }
      last_ts_ms = cp[0].ts.getTime();
      checkpoints++;
    }
  }
  let last_seq = snapshot_seq;
  let replayed = 0;
  let failure: Error | null = null;
  const e = engine;
  const reader = new CopyJournalReader((row: JournalRow) => {
    if (failure !== null) return;
    try {
      if (row.seq !== last_seq + 1) {
        throw new RecoveryError('RECOVERY_SEQ_GAP', `zone ${zone_id}: journal jumps from seq ${last_seq} to ${row.seq}`);
      }
      if (row.kind === JOURNAL_KIND_COMMAND) {
        e.execute(decodeCommand(row.payload, zone_id, row.ts_ms));
        if (options.verify_events === true) compareEvents(zone_id, row, e.events());
      } else if (row.kind === JOURNAL_KIND_CHECKPOINT) {
        const recorded = decodeCheckpointPayload(row.payload);
        const actual = hashLike(e, recorded);
        if (recorded !== actual) {
          throw new RecoveryError('RECOVERY_HASH_MISMATCH', `zone ${zone_id}: state hash at seq ${row.seq} is ${actual}, journal recorded ${recorded}`);
        }
        checkpoints++;
      } else {
        throw new RecoveryError('RECOVERY_BAD_ROW', `zone ${zone_id}: unknown journal kind ${row.kind} at seq ${row.seq}`);
      }
      last_seq = row.seq;
      last_ts_ms = row.ts_ms;
      replayed++;
    } catch (err) {
      failure = err as Error;
    }
  });
  // COPY TO (binary) is the fastest way out of PostgreSQL; integers are validated above.
  const stream = await sql
    .unsafe(
      `copy (select zone_id, seq, kind, payload, ts from engine_journal where zone_id = ${zone_id} and seq > ${snapshot_seq} order by seq) to stdout (format binary)`,
    )
    .readable();
  for await (const chunk of stream) reader.push(chunk as Uint8Array);
  if (failure !== null) throw failure;
  return {
    engine,
    zone_id,
    snapshot_seq,
    last_seq,
    last_ts_ms,
    replayed_rows: replayed,
    checkpoints_verified: checkpoints,
    state_hash: engine.stateHash(),
    intervals: engine.intervals(),
    duration_ms: performance.now() - t0,
  };
}

/**
 * The engine's hash of the kind `recorded` is: a checkpoint hash ("v2:…", written since
 * 2026-12-03) or a stateHash() (what earlier checkpoints and snapshots recorded).
 */
function hashLike(e: RuntimeZoneEngine, recorded: string): string {
  return recorded.startsWith(CHECKPOINT_HASH_PREFIX) ? e.checkpointHash() : e.stateHash();
}

function compareEvents(zone_id: number, row: JournalRow, actual: EngineEvent[]): void {
  const journaled = decodeEvents(row.payload, zone_id, row.ts_ms);
  const a = canonicalJson(actual);
  const j = canonicalJson(journaled);
  if (a !== j) throw new RecoveryError('RECOVERY_EVENTS_DIFFER', `zone ${zone_id}: replay of seq ${row.seq} gave ${a}, journal has ${j}`);
}

/** JSON with object keys sorted, so equal values give equal text whatever their key order. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}

function assertInt(n: number): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`zone_id must be a positive safe integer, got ${n}`);
}
