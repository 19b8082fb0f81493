// Public types of the matching engine core: commands in, events out.
// Units are in the names: prices are integer ticks, quantities integer Wh, times integer ms.
// The exact semantics are in ../../../shared/MARKET-RULES.md (copied rules are quoted in docs/engine.md).

export type Side = 'BUY' | 'SELL';
/** A SELL names its physical source; a BUY names one source or ANY. */
export type Source = 'ANY' | 'SOLAR' | 'WIND' | 'BATTERY' | 'HYDRO';
export type OrderType = 'LIMIT' | 'MARKET' | 'IOC' | 'FOK' | 'POST_ONLY';
export type StpMode = 'CANCEL_NEWEST' | 'CANCEL_OLDEST' | 'CANCEL_BOTH';
export type ZoneStatus = 'ACTIVE' | 'HALTED' | 'MAINTENANCE';
export type HaltPolicy = 'CANCEL_RESTING' | 'KEEP_RESTING';
export type MassCancelScope = 'USER' | 'USER_ZONE' | 'INTERVAL';

/** Stable, machine-readable rejection codes (MARKET-RULES.md "Rejection codes"), plus four for admin commands. */
export const REJECT_CODES = [
  'INVALID_ORDER',
  'UNKNOWN_ORDER',
  'UNKNOWN_ZONE',
  'UNKNOWN_INTERVAL',
  'ZONE_HALTED',
  'INTERVAL_CLOSED',
  'DUPLICATE_CLIENT_ORDER_ID',
  'PRICE_OUT_OF_BAND',
  'BAD_TICK',
  'QTY_OUT_OF_RANGE',
  'BAD_LOT',
  'TOO_MANY_OPEN_ORDERS',
  'SELLER_CAPACITY_EXCEEDED',
  'POST_ONLY_WOULD_MATCH',
  'FOK_NOT_FILLABLE',
  // admin commands (not orders)
  'INVALID_COMMAND',
  'INTERVAL_EXISTS',
] as const;
export type RejectCode = (typeof REJECT_CODES)[number];

export const CANCEL_REASONS = ['USER', 'SELF_TRADE', 'UNFILLED', 'AMEND', 'MASS_CANCEL', 'HALT'] as const;
export type CancelReason = (typeof CANCEL_REASONS)[number];

/** Why an order expired: its interval's gate closed, or its own good-till time passed. */
export const EXPIRE_CAUSES = ['GATE_CLOSE', 'GOOD_TILL_TIME'] as const;
export type ExpireCause = (typeof EXPIRE_CAUSES)[number];

// ---------------------------------------------------------------------------------------------
// Commands. Every command carries ts_ms from the sequencer; the engine never reads a clock.

interface CommandBase {
  /** Sequencer time, integer ms. Good-till-time orders expire when a command's ts_ms reaches their expiry. */
  ts_ms: number;
}

export interface ConfigureZoneCommand extends CommandBase {
  type: 'CONFIGURE_ZONE';
  zone_id: number;
  /** Prices must be multiples of this (grid anchored at 0). */
  price_step_ticks: number;
  /** Quantities must be multiples of this. */
  lot_wh: number;
  /** Inclusive price band; may be negative. */
  band_min_ticks: number;
  band_max_ticks: number;
  /** Inclusive order size bounds. */
  min_qty_wh: number;
  max_qty_wh: number;
  /** Open orders per user in the whole zone (all intervals). */
  max_open_orders_per_user: number;
  /** Sets the status without cancelling anything (HALT with a policy is the operator's command). */
  status?: ZoneStatus;
}

export interface OpenIntervalCommand extends CommandBase {
  type: 'OPEN_INTERVAL';
  interval_id: number;
  /** Grid capacity of the zone for this interval: matched Wh in the book never exceed it. */
  capacity_wh: number;
}

export interface GateCloseCommand extends CommandBase {
  type: 'GATE_CLOSE';
  interval_id: number;
}

export interface HaltCommand extends CommandBase {
  type: 'HALT';
  policy: HaltPolicy;
}

export interface MaintenanceCommand extends CommandBase {
  type: 'MAINTENANCE';
  /** Default KEEP_RESTING. */
  policy?: HaltPolicy;
}

export interface ResumeCommand extends CommandBase {
  type: 'RESUME';
}

export interface SetSellerLimitCommand extends CommandBase {
  type: 'SET_SELLER_LIMIT';
  user_id: number;
  interval_id: number;
  /** What the seller's registered sources can produce in the interval; null removes the limit. */
  limit_wh: number | null;
}

export interface PlaceCommand extends CommandBase {
  type: 'PLACE';
  /** Chosen by the caller (the runtime's sequencer): a positive safe integer, unique exchange-wide. */
  order_id: number;
  user_id: number;
  client_order_id: string;
  zone_id: number;
  interval_id: number;
  side: Side;
  source: Source;
  order_type: OrderType;
  /** Limit price; for MARKET the protection price. */
  price_ticks: number;
  qty_wh: number;
  stp?: StpMode;
  /** LIMIT / POST_ONLY only: good till this time (else good till gate closure). */
  expire_at_ms?: number;
}

export interface CancelCommand extends CommandBase {
  type: 'CANCEL';
  order_id: number;
  user_id: number;
}

export interface AmendCommand extends CommandBase {
  type: 'AMEND';
  order_id: number;
  user_id: number;
  /** New price; omitted = unchanged. */
  price_ticks?: number;
  /** New total quantity, filled part included; omitted = unchanged. */
  qty_wh?: number;
}

export interface MassCancelCommand extends CommandBase {
  type: 'MASS_CANCEL';
  scope: MassCancelScope;
  /** USER and USER_ZONE. */
  user_id?: number;
  /** USER_ZONE and INTERVAL (must be this engine's zone). */
  zone_id?: number;
  /** INTERVAL. */
  interval_id?: number;
}

export interface ExpireDueCommand extends CommandBase {
  type: 'EXPIRE_DUE';
}

export type Command =
  | ConfigureZoneCommand
  | OpenIntervalCommand
  | GateCloseCommand
  | HaltCommand
  | MaintenanceCommand
  | ResumeCommand
  | SetSellerLimitCommand
  | PlaceCommand
  | CancelCommand
  | AmendCommand
  | MassCancelCommand
  | ExpireDueCommand;

export type CommandType = Command['type'];

// ---------------------------------------------------------------------------------------------
// Events (decoded form). Every event has the engine's per-zone event sequence and the command's ts.

interface EventBase {
  event_seq: number;
  zone_id: number;
  ts_ms: number;
}

export interface AcceptedEvent extends EventBase {
  type: 'ACCEPTED';
  order_id: number;
  user_id: number;
  client_order_id: string;
  interval_id: number;
  side: Side;
  source: Source;
  order_type: OrderType;
  stp: StpMode;
  price_ticks: number;
  qty_wh: number;
  /** Priority sequence (time priority within a price). */
  seq: number;
  /** 0 = good till gate closure. */
  expire_at_ms: number;
}

export interface RejectedEvent extends EventBase {
  type: 'REJECTED';
  command: CommandType;
  reason: RejectCode;
  /** 0 when the command names no order. */
  order_id: number;
  user_id: number;
  client_order_id: string;
  interval_id: number;
}

export interface FillEvent extends EventBase {
  type: 'FILL';
  /** Per-zone trade number, 1, 2, 3, ... */
  trade_id: number;
  interval_id: number;
  maker_order_id: number;
  maker_user_id: number;
  taker_order_id: number;
  taker_user_id: number;
  taker_side: Side;
  /** The resting (maker) order's price. */
  price_ticks: number;
  qty_wh: number;
  /** The SELL order's source. */
  source: Exclude<Source, 'ANY'>;
  maker_remaining_wh: number;
  taker_remaining_wh: number;
}

export interface CancelledEvent extends EventBase {
  type: 'CANCELLED';
  order_id: number;
  user_id: number;
  client_order_id: string;
  interval_id: number;
  reason: CancelReason;
  /** The remaining quantity that was cancelled. */
  qty_wh: number;
  filled_wh: number;
}

export interface ExpiredEvent extends EventBase {
  type: 'EXPIRED';
  order_id: number;
  user_id: number;
  client_order_id: string;
  interval_id: number;
  cause: ExpireCause;
  /** The remaining quantity that expired. */
  qty_wh: number;
  filled_wh: number;
}

export interface AmendedEvent extends EventBase {
  type: 'AMENDED';
  order_id: number;
  user_id: number;
  client_order_id: string;
  interval_id: number;
  price_ticks: number;
  /** New total, filled part included. */
  qty_wh: number;
  remaining_wh: number;
  filled_wh: number;
  seq: number;
  /** false = the order lost time priority (price change or quantity increase) and took a new seq. */
  priority_kept: boolean;
}

/** Per-level book change, emitted once per touched (side, source, price) at the end of a command. */
export interface BookLevelEvent extends EventBase {
  type: 'BOOK_LEVEL';
  interval_id: number;
  side: Side;
  source: Source;
  price_ticks: number;
  /** New total at this price on this side, all sources together (0 = level gone). */
  qty_wh: number;
  /** New total at this price for this source alone. */
  source_qty_wh: number;
  source_order_count: number;
}

export interface ZoneStatusEvent extends EventBase {
  type: 'ZONE_STATUS';
  status: ZoneStatus;
  policy: HaltPolicy;
}

export interface ZoneConfiguredEvent extends EventBase {
  type: 'ZONE_CONFIGURED';
  config: ZoneConfig;
}

export interface IntervalOpenedEvent extends EventBase {
  type: 'INTERVAL_OPENED';
  interval_id: number;
  capacity_wh: number;
}

export interface GateClosedEvent extends EventBase {
  type: 'GATE_CLOSED';
  interval_id: number;
  expired_count: number;
}

export interface SellerLimitSetEvent extends EventBase {
  type: 'SELLER_LIMIT_SET';
  interval_id: number;
  user_id: number;
  /** null = no limit. */
  limit_wh: number | null;
}

export type EngineEvent =
  | AcceptedEvent
  | RejectedEvent
  | FillEvent
  | CancelledEvent
  | ExpiredEvent
  | AmendedEvent
  | BookLevelEvent
  | ZoneStatusEvent
  | ZoneConfiguredEvent
  | IntervalOpenedEvent
  | GateClosedEvent
  | SellerLimitSetEvent;

export type EventType = EngineEvent['type'];

// ---------------------------------------------------------------------------------------------
// Views and snapshots

export interface ZoneConfig {
  zone_id: number;
  price_step_ticks: number;
  lot_wh: number;
  band_min_ticks: number;
  band_max_ticks: number;
  min_qty_wh: number;
  max_qty_wh: number;
  max_open_orders_per_user: number;
  status: ZoneStatus;
}

export interface OrderView {
  order_id: number;
  user_id: number;
  client_order_id: string;
  interval_id: number;
  side: Side;
  source: Source;
  order_type: OrderType;
  stp: StpMode;
  price_ticks: number;
  /** Total, filled part included. */
  qty_wh: number;
  remaining_wh: number;
  filled_wh: number;
  seq: number;
  expire_at_ms: number;
}

export interface L2Level {
  price_ticks: number;
  qty_wh: number;
  order_count: number;
}

export interface L2Snapshot {
  interval_id: number;
  /** Best first. */
  bids: L2Level[];
  asks: L2Level[];
}

export interface L3Snapshot {
  interval_id: number;
  /** Priority order: best price first, then earliest seq, across sources. */
  bids: OrderView[];
  asks: OrderView[];
}

export interface IntervalView {
  interval_id: number;
  capacity_wh: number;
  matched_wh: number;
  closed: boolean;
  open_orders: number;
}

export interface SellerView {
  user_id: number;
  interval_id: number;
  limit_wh: number | null;
  sold_wh: number;
  open_sell_wh: number;
}

/** The whole engine state as plain JSON-safe data (every number a safe integer). */
export interface EngineSnapshot {
  version: 1;
  zone_id: number;
  config: ZoneConfig | null;
  next_seq: number;
  event_seq: number;
  trade_seq: number;
  last_ts_ms: number;
  intervals: IntervalView[];
  sellers: SellerView[];
  /** Open orders in seq order. */
  orders: OrderView[];
}
