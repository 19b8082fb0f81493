// The runtime's view of the engine core: the few things it needs from a zone engine. Kept
// narrow so the runtime does not depend on the core's internals (engine/core/engine.ts).
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

export function createZoneEngine(zone_id: number): RuntimeZoneEngine {
  return new ZoneEngine(zone_id);
}

export function restoreZoneEngine(snapshot: EngineSnapshot): RuntimeZoneEngine {
  return ZoneEngine.restore(snapshot);
}
