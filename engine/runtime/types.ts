// Public types of the engine runtime (the gateway's internal API). See docs/runtime.md.
import type { Command, EngineEvent, PlaceCommand } from '../core/types.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * A command as the gateway submits it: no ts_ms (the sequencer stamps time) and, for PLACE, no
 * order_id (the sequencer assigns it: zone_id × 2^36 + the command's zone seq).
 */
export type SubmitCommand =
  | DistributiveOmit<Exclude<Command, PlaceCommand>, 'ts_ms'>
  | Omit<PlaceCommand, 'ts_ms' | 'order_id'>;

/** Runtime errors (the engine's own rejections arrive as REJECTED events in an ok result). */
export type RuntimeErrorCode =
  /** PostgreSQL unreachable or slower than the bound, or the journal backlog is full; retry later. */
  | 'EXCHANGE_UNAVAILABLE'
  /** The zone is restarting (its worker died) or recovering; retry shortly. */
  | 'ZONE_UNAVAILABLE'
  /** The runtime does not run this zone. */
  | 'UNKNOWN_ZONE'
  /** The command cannot be routed (a PLACE for another zone, a CHECKPOINT from outside, …). */
  | 'INVALID_COMMAND'
  | 'SHUTTING_DOWN';

export interface SubmitAck {
  ok: true;
  zone_id: number;
  /** The command's journal sequence in its zone. */
  seq: number;
  ts_ms: number;
  /** PLACE only: the id the sequencer gave the order. */
  order_id?: number;
  /** The command's events (ACCEPTED/REJECTED/FILL/…), all durable. */
  events: EngineEvent[];
}

export interface SubmitError {
  ok: false;
  code: RuntimeErrorCode;
  message: string;
}

export type SubmitResult = SubmitAck | SubmitError;

/** One committed command's events, as delivered to subscribers (in seq order per zone). */
export interface CommittedEvents {
  zone_id: number;
  seq: number;
  ts_ms: number;
  events: EngineEvent[];
}

/** Handed off when an interval's gate has closed and its expiries are durable. */
export interface ClosedInterval {
  zone_id: number;
  interval_id: number;
  /** Journal seq of the GATE_CLOSE command. */
  seq: number;
  closed_at_ms: number;
  expired_count: number;
}

export interface ZoneStatusView {
  zone_id: number;
  status: 'RECOVERING' | 'READY' | 'FAILED';
  /** Last sequence number handed out. */
  last_seq: number;
  worker: number;
  /** How the zone was last rebuilt: from the snapshot at snapshot_seq plus replayed_rows of journal. */
  last_recovery: { snapshot_seq: number; replayed_rows: number; checkpoints_verified: number; state_hash: string; duration_ms: number } | null;
}

export interface RuntimeStatus {
  available: boolean;
  /** FENCED: another runtime took the journal lock while this one's session was gone; it writes no more. */
  journal: 'AVAILABLE' | 'UNAVAILABLE' | 'FENCED' | 'CLOSED';
  /** The journal's session holds the one-writer-per-database lock now. */
  journal_locked: boolean;
  backlog_rows: number;
  inflight_commands: number;
  zones: ZoneStatusView[];
  worker_restarts: number;
  /** Journal totals since start: commits, rows, bytes, retried commits, ms spent committing. */
  journal_stats: { commits: number; rows: number; bytes: number; retries: number; busy_ms: number };
}
