// The runtime's view of the engine core: the few things it needs from a zone engine. Kept
// narrow so the runtime does not depend on the core's internals (engine/core/engine.ts).
import { workerData } from 'node:worker_threads';
import { ZoneEngine, type SnapshotEncoder } from '../index.js';
import type { Command, EngineEvent, EngineSnapshot, IntervalView } from '../core/types.js';
import type { EngineEventSource } from './codec.js';

export interface RuntimeZoneEngine extends EngineEventSource {
  /** Runs one command; returns how many events it produced (readable with events() until the next call). */
  execute(cmd: Command): number;
  /** Runs cmds[from, to) as execute() would one by one; their events stay in the buffer, command k's ending at batchEventEnd(k). */
  executeBatch(cmds: readonly Command[], from: number, to: number): number;
  batchEventEnd(k: number): number;
  /** The events of the last command as plain objects. */
  events(): EngineEvent[];
  stateHash(): string;
  readonly openOrderCount: number;
  readonly openGoodTillTimeCount: number;
  /** The hash journaled at a checkpoint ("v2:…"; cheap: no sort, no text per order). */
  checkpointHash(): string;
  /** A copy of the state for a binary snapshot, encoded later in slices (decodeSnapshot() gives serialize()'s output back). */
  captureSnapshot(): SnapshotEncoder;
  serialize(): EngineSnapshot;
  intervals(): IntervalView[];
}

/**
 * RuntimeOptions.engine_order_slots, which the runtime hands to each zone worker as workerData
 * (0: the engine's default). Read here so that every engine a worker creates or restores gets it.
 */
const ORDER_SLOTS: number = (workerData as { engine_order_slots?: number } | null)?.engine_order_slots ?? 0;

export function createZoneEngine(zone_id: number, order_slots = ORDER_SLOTS): RuntimeZoneEngine {
  return new ZoneEngine(zone_id, order_slots > 0 ? { initial_order_slots: order_slots } : {});
}

export function restoreZoneEngine(snapshot: EngineSnapshot, order_slots = ORDER_SLOTS): RuntimeZoneEngine {
  return ZoneEngine.restore(snapshot, order_slots > snapshot.orders.length ? { initial_order_slots: order_slots } : {});
}
