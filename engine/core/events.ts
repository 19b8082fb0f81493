// Decoding of the engine's event buffer into plain, serialisable event objects.
// Layout: EVENT_WIDTH float64 cells per event; cell 0 = type, 1 = event_seq, 2 = interval_id,
// then per type (cell: field):
//   ACCEPTED   3 order_id, 4 user_id, 5 side, 6 source, 7 order_type, 8 stp, 9 price_ticks, 10 qty_wh,
//              11 seq, 12 expire_at_ms                                        (+ client_order_id string)
//   REJECTED   3 order_id, 4 user_id, 5 reason, 6 command                      (+ client_order_id)
//   FILL       3 trade_id, 4 maker_order_id, 5 maker_user_id, 6 taker_order_id, 7 taker_user_id,
//              8 price_ticks, 9 qty_wh, 10 source, 11 taker_side, 12 maker_remaining_wh, 13 taker_remaining_wh
//   CANCELLED  3 order_id, 4 user_id, 5 reason, 6 qty_wh, 7 filled_wh       (+ client_order_id)
//   EXPIRED    3 order_id, 4 user_id, 5 cause, 6 qty_wh, 7 filled_wh        (+ client_order_id)
//   AMENDED    3 order_id, 4 user_id, 5 price_ticks, 6 qty_wh, 7 remaining_wh, 8 seq, 9 priority_kept,
//              10 filled_wh                                                    (+ client_order_id)
//   BOOK_LEVEL 3 side, 4 source, 5 price_ticks, 6 qty_wh, 7 source_qty_wh, 8 source_order_count
//   ZONE_STATUS 3 status, 4 policy
//   ZONE_CONFIGURED 3 step, 4 lot, 5 band min, 6 band max, 7 min qty, 8 max qty, 9 max open, 10 status
//   INTERVAL_OPENED 3 capacity_wh; GATE_CLOSED 3 expired_count; SELLER_LIMIT_SET 3 user_id, 4 limit (-1 none)

import {
  COMMAND_TYPES,
  E_ACCEPTED,
  E_AMENDED,
  E_BOOK_LEVEL,
  E_CANCELLED,
  E_EXPIRED,
  E_FILL,
  E_GATE_CLOSED,
  E_INTERVAL_OPENED,
  E_REJECTED,
  E_SELLER_LIMIT_SET,
  E_ZONE_CONFIGURED,
  E_ZONE_STATUS,
  HALT_POLICIES,
  ORDER_TYPES,
  SIDES,
  SOURCES,
  STP_MODES,
  ZONE_STATUSES,
} from './codes.js';
import { CANCEL_REASONS, EXPIRE_CAUSES, REJECT_CODES } from './types.js';
import type { CommandType, EngineEvent, FillEvent } from './types.js';

export function decodeEvent(ev: Float64Array, f: number, s: string | undefined, zone_id: number, ts_ms: number): EngineEvent {
  const type = ev[f];
  const event_seq = ev[f + 1];
  const interval_id = ev[f + 2];
  switch (type) {
    case E_ACCEPTED:
      return {
        type: 'ACCEPTED',
        event_seq,
        zone_id,
        ts_ms,
        order_id: ev[f + 3],
        user_id: ev[f + 4],
        client_order_id: s ?? '',
        interval_id,
        side: SIDES[ev[f + 5]],
        source: SOURCES[ev[f + 6]],
        order_type: ORDER_TYPES[ev[f + 7]],
        stp: STP_MODES[ev[f + 8]],
        price_ticks: ev[f + 9],
        qty_wh: ev[f + 10],
        seq: ev[f + 11],
        expire_at_ms: ev[f + 12],
      };
    case E_REJECTED:
      return {
        type: 'REJECTED',
        event_seq,
        zone_id,
        ts_ms,
        command: COMMAND_TYPES[ev[f + 6]] as CommandType,
        reason: REJECT_CODES[ev[f + 5]],
        order_id: ev[f + 3],
        user_id: ev[f + 4],
        client_order_id: s ?? '',
        interval_id,
      };
    case E_FILL:
      return {
        type: 'FILL',
        event_seq,
        zone_id,
        ts_ms,
        trade_id: ev[f + 3],
        interval_id,
        maker_order_id: ev[f + 4],
        maker_user_id: ev[f + 5],
        taker_order_id: ev[f + 6],
        taker_user_id: ev[f + 7],
        taker_side: SIDES[ev[f + 11]],
        price_ticks: ev[f + 8],
        qty_wh: ev[f + 9],
        source: SOURCES[ev[f + 10]] as FillEvent['source'],
        maker_remaining_wh: ev[f + 12],
        taker_remaining_wh: ev[f + 13],
      };
    case E_CANCELLED:
      return {
        type: 'CANCELLED',
        event_seq,
        zone_id,
        ts_ms,
        order_id: ev[f + 3],
        user_id: ev[f + 4],
        client_order_id: s ?? '',
        interval_id,
        reason: CANCEL_REASONS[ev[f + 5]],
        qty_wh: ev[f + 6],
        filled_wh: ev[f + 7],
      };
    case E_EXPIRED:
      return {
        type: 'EXPIRED',
        event_seq,
        zone_id,
        ts_ms,
        order_id: ev[f + 3],
        user_id: ev[f + 4],
        client_order_id: s ?? '',
        interval_id,
        cause: EXPIRE_CAUSES[ev[f + 5]],
        qty_wh: ev[f + 6],
        filled_wh: ev[f + 7],
      };
    case E_AMENDED:
      return {
        type: 'AMENDED',
        event_seq,
        zone_id,
        ts_ms,
        order_id: ev[f + 3],
        user_id: ev[f + 4],
        client_order_id: s ?? '',
        interval_id,
        price_ticks: ev[f + 5],
        qty_wh: ev[f + 6],
        remaining_wh: ev[f + 7],
        filled_wh: ev[f + 10],
        seq: ev[f + 8],
        priority_kept: ev[f + 9] === 1,
      };
    case E_BOOK_LEVEL:
      return {
        type: 'BOOK_LEVEL',
        event_seq,
        zone_id,
        ts_ms,
        interval_id,
        side: SIDES[ev[f + 3]],
        source: SOURCES[ev[f + 4]],
        price_ticks: ev[f + 5],
        qty_wh: ev[f + 6],
        source_qty_wh: ev[f + 7],
        source_order_count: ev[f + 8],
      };
    case E_ZONE_STATUS:
      return { type: 'ZONE_STATUS', event_seq, zone_id, ts_ms, status: ZONE_STATUSES[ev[f + 3]], policy: HALT_POLICIES[ev[f + 4]] };
    case E_ZONE_CONFIGURED:
      return {
        type: 'ZONE_CONFIGURED',
        event_seq,
        zone_id,
        ts_ms,
        config: {
          zone_id,
          price_step_ticks: ev[f + 3],
          lot_wh: ev[f + 4],
          band_min_ticks: ev[f + 5],
          band_max_ticks: ev[f + 6],
          min_qty_wh: ev[f + 7],
          max_qty_wh: ev[f + 8],
          max_open_orders_per_user: ev[f + 9],
          status: ZONE_STATUSES[ev[f + 10]],
        },
      };
    case E_INTERVAL_OPENED:
      return { type: 'INTERVAL_OPENED', event_seq, zone_id, ts_ms, interval_id, capacity_wh: ev[f + 3] };
    case E_GATE_CLOSED:
      return { type: 'GATE_CLOSED', event_seq, zone_id, ts_ms, interval_id, expired_count: ev[f + 3] };
    case E_SELLER_LIMIT_SET:
      return {
        type: 'SELLER_LIMIT_SET',
        event_seq,
        zone_id,
        ts_ms,
        interval_id,
        user_id: ev[f + 3],
        limit_wh: ev[f + 4] < 0 ? null : ev[f + 4],
      };
    default:
      throw new Error(`corrupt event buffer: type ${type} at cell ${f}`);
  }
}
