// Front door of the engine module. The core (engine/core) is pure: no I/O, no clocks.
export { ZoneEngine, SnapshotEncoder, MAX_OPEN_ORDERS_PER_ZONE, MAX_CLIENT_ORDER_ID_LENGTH, MAX_INTERVALS_PER_ZONE } from './core/engine.js';
export type { ZoneEngineOptions } from './core/engine.js';
export { REJECT_CODES, CANCEL_REASONS, EXPIRE_CAUSES } from './core/types.js';
export type * from './core/types.js';
export { decodeSnapshot, isBinarySnapshot, CHECKPOINT_HASH_PREFIX } from './core/snapshot.js';
