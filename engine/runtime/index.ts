// Front door of the engine runtime (docs/runtime.md): sequencer, zone workers, durable journal,
// recovery, read models and the delivery-interval clock.
export { startRuntime, workerEntry, WORKER_BATCH_MAX, RUNTIME_LOCK_KEY } from './runtime.js';
export type { Runtime, RuntimeOptions } from './runtime.js';
export type {
  SubmitCommand,
  SubmitResult,
  SubmitAck,
  SubmitError,
  RuntimeErrorCode,
  CommittedEvents,
  ClosedInterval,
  RuntimeStatus,
  ZoneStatusView,
} from './types.js';
export { orderIdFor, tradeIdFor, ZONE_ID_SHIFT, MAX_ZONE_ID } from './ids.js';
export { recoverZone, RecoveryError, canonicalJson } from './recovery.js';
export type { RecoveryResult, RecoverOptions } from './recovery.js';
export { projectOnce, rebuildProjections, startProjector, PROJECTION_NAME } from './projections.js';
export { JOURNAL_KIND_COMMAND, JOURNAL_KIND_CHECKPOINT, decodeCommand, decodeEvents, decodeCheckpointPayload } from './codec.js';
export { JournalWriter } from './journal.js';
export type { JournalChunk, JournalState, JournalWriterOptions } from './journal.js';
