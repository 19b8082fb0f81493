// Small integer codes used inside the engine and in the event buffer, and their names.

import type { CommandType, HaltPolicy, OrderType, Side, Source, StpMode, ZoneStatus } from './types.js';

export const BUY = 0;
export const SELL = 1;
export const SIDES: readonly Side[] = ['BUY', 'SELL'];

export const ANY = 0;
export const SOURCES: readonly Source[] = ['ANY', 'SOLAR', 'WIND', 'BATTERY', 'HYDRO'];

export const T_LIMIT = 0;
export const T_MARKET = 1;
export const T_IOC = 2;
export const T_FOK = 3;
export const T_POST_ONLY = 4;
export const ORDER_TYPES: readonly OrderType[] = ['LIMIT', 'MARKET', 'IOC', 'FOK', 'POST_ONLY'];

export const STP_NEWEST = 0;
export const STP_OLDEST = 1;
export const STP_BOTH = 2;
export const STP_MODES: readonly StpMode[] = ['CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'];

export const ST_ACTIVE = 0;
export const ZONE_STATUSES: readonly ZoneStatus[] = ['ACTIVE', 'HALTED', 'MAINTENANCE'];
export const HALT_POLICIES: readonly HaltPolicy[] = ['CANCEL_RESTING', 'KEEP_RESTING'];

// Rejection codes: indexes into REJECT_CODES (types.ts); keep both lists in the same order.
export const R_INVALID_ORDER = 0;
export const R_UNKNOWN_ORDER = 1;
export const R_UNKNOWN_ZONE = 2;
export const R_UNKNOWN_INTERVAL = 3;
export const R_ZONE_HALTED = 4;
export const R_INTERVAL_CLOSED = 5;
export const R_DUPLICATE_CLIENT_ORDER_ID = 6;
export const R_PRICE_OUT_OF_BAND = 7;
export const R_BAD_TICK = 8;
export const R_QTY_OUT_OF_RANGE = 9;
export const R_BAD_LOT = 10;
export const R_TOO_MANY_OPEN_ORDERS = 11;
export const R_SELLER_CAPACITY_EXCEEDED = 12;
export const R_POST_ONLY_WOULD_MATCH = 13;
export const R_FOK_NOT_FILLABLE = 14;
export const R_INVALID_COMMAND = 15;
export const R_INTERVAL_EXISTS = 16;

// Cancel reasons: indexes into CANCEL_REASONS.
export const C_USER = 0;
export const C_SELF_TRADE = 1;
export const C_UNFILLED = 2;
export const C_AMEND = 3;
export const C_MASS_CANCEL = 4;
export const C_HALT = 5;

// Expiry causes: indexes into EXPIRE_CAUSES.
export const X_GATE_CLOSE = 0;
export const X_GOOD_TILL_TIME = 1;

export const COMMAND_TYPES: readonly (CommandType | 'UNKNOWN')[] = [
  'UNKNOWN',
  'CONFIGURE_ZONE',
  'OPEN_INTERVAL',
  'GATE_CLOSE',
  'HALT',
  'MAINTENANCE',
  'RESUME',
  'SET_SELLER_LIMIT',
  'PLACE',
  'CANCEL',
  'AMEND',
  'MASS_CANCEL',
  'EXPIRE_DUE',
];
export const K_UNKNOWN = 0;
export const K_CONFIGURE_ZONE = 1;
export const K_OPEN_INTERVAL = 2;
export const K_GATE_CLOSE = 3;
export const K_HALT = 4;
export const K_MAINTENANCE = 5;
export const K_RESUME = 6;
export const K_SET_SELLER_LIMIT = 7;
export const K_PLACE = 8;
export const K_CANCEL = 9;
export const K_AMEND = 10;
export const K_MASS_CANCEL = 11;
export const K_EXPIRE_DUE = 12;

// Event record layout in the event buffer: EVENT_WIDTH float64 cells per event.
// Cell 0 = event type, 1 = event_seq, 2 = interval_id; the rest depend on the type (see events.ts).
export const EVENT_WIDTH = 14;
export const E_ACCEPTED = 1;
export const E_REJECTED = 2;
export const E_FILL = 3;
export const E_CANCELLED = 4;
export const E_EXPIRED = 5;
export const E_AMENDED = 6;
export const E_BOOK_LEVEL = 7;
export const E_ZONE_STATUS = 8;
export const E_ZONE_CONFIGURED = 9;
export const E_INTERVAL_OPENED = 10;
export const E_GATE_CLOSED = 11;
export const E_SELLER_LIMIT_SET = 12;

export function sourceCode(s: unknown): number {
  switch (s) {
    case 'ANY':
      return 0;
    case 'SOLAR':
      return 1;
    case 'WIND':
      return 2;
    case 'BATTERY':
      return 3;
    case 'HYDRO':
      return 4;
    default:
      return -1;
  }
}

export function orderTypeCode(t: unknown): number {
  switch (t) {
    case 'LIMIT':
      return T_LIMIT;
    case 'MARKET':
      return T_MARKET;
    case 'IOC':
      return T_IOC;
    case 'FOK':
      return T_FOK;
    case 'POST_ONLY':
      return T_POST_ONLY;
    default:
      return -1;
  }
}

export function stpCode(s: unknown): number {
  switch (s) {
    case undefined:
    case 'CANCEL_NEWEST':
      return STP_NEWEST;
    case 'CANCEL_OLDEST':
      return STP_OLDEST;
    case 'CANCEL_BOTH':
      return STP_BOTH;
    default:
      return -1;
  }
}

export function statusCode(s: unknown): number {
  return ZONE_STATUSES.indexOf(s as ZoneStatus);
}

export function policyCode(p: unknown): number {
  return HALT_POLICIES.indexOf(p as HaltPolicy);
}

/** A positive safe integer (ids, quantities). */
export function isPositiveInt(x: unknown): x is number {
  if (typeof x !== 'number') return false;
  if ((x | 0) === x) return x > 0; // the common case: fits in int32
  return x > 0 && x <= Number.MAX_SAFE_INTEGER && Math.floor(x) === x;
}

/** Any safe integer (prices, band limits). */
export function isSafeInt(x: unknown): x is number {
  return typeof x === 'number' && ((x | 0) === x || Number.isSafeInteger(x));
}

export function isNonNegativeInt(x: unknown): x is number {
  return typeof x === 'number' && x >= 0 && x <= Number.MAX_SAFE_INTEGER && Math.floor(x) === x;
}
