// Test fixtures for the engine: a configured zone with one open interval and terse command builders.
import { ZoneEngine } from '../../engine/index.js';
import type { Command, ConfigureZoneCommand, EngineEvent, PlaceCommand } from '../../engine/index.js';

export const ZONE = 1;
export const IV = 100;
export const IV2 = 101;

export const DEFAULT_CONFIG: Omit<ConfigureZoneCommand, 'ts_ms'> = {
  type: 'CONFIGURE_ZONE',
  zone_id: ZONE,
  price_step_ticks: 1,
  lot_wh: 1,
  band_min_ticks: -1000,
  band_max_ticks: 1000,
  min_qty_wh: 1,
  max_qty_wh: 1_000_000,
  max_open_orders_per_user: 1000,
};

export interface Setup {
  config?: Partial<ConfigureZoneCommand>;
  capacity_wh?: number;
  intervals?: number[];
}

/** A driver around one ZoneEngine: auto order ids, a moving ts, events returned as plain objects. */
export class Driver {
  readonly e: ZoneEngine;
  ts = 1000;
  nextOrderId = 1000; // explicit ids in tests stay below this

  constructor(setup: Setup = {}) {
    this.e = new ZoneEngine(ZONE);
    this.run({ ...DEFAULT_CONFIG, ...setup.config, ts_ms: this.ts } as Command);
    for (const iv of setup.intervals ?? [IV, IV2]) {
      this.run({ type: 'OPEN_INTERVAL', ts_ms: this.ts, interval_id: iv, capacity_wh: setup.capacity_wh ?? 1e12 });
    }
  }

  run(cmd: Command): EngineEvent[] {
    return this.e.apply(cmd);
  }

  /** PLACE with defaults: BUY, source ANY (SOLAR for SELL), LIMIT, interval IV, qty 10, price 100. */
  place(p: Partial<PlaceCommand> & { user_id: number }): EngineEvent[] {
    const order_id = p.order_id ?? this.nextOrderId++;
    const side = p.side ?? 'BUY';
    return this.run({
      type: 'PLACE',
      ts_ms: this.ts,
      order_id,
      client_order_id: `c${order_id}`,
      zone_id: ZONE,
      interval_id: IV,
      side,
      source: side === 'BUY' ? 'ANY' : 'SOLAR',
      order_type: 'LIMIT',
      price_ticks: 100,
      qty_wh: 10,
      ...p,
    } as PlaceCommand);
  }

  buy(user_id: number, price_ticks: number, qty_wh: number, more: Partial<PlaceCommand> = {}): EngineEvent[] {
    return this.place({ user_id, side: 'BUY', price_ticks, qty_wh, ...more });
  }

  sell(user_id: number, price_ticks: number, qty_wh: number, more: Partial<PlaceCommand> = {}): EngineEvent[] {
    return this.place({ user_id, side: 'SELL', price_ticks, qty_wh, ...more });
  }

  cancel(order_id: number, user_id: number): EngineEvent[] {
    return this.run({ type: 'CANCEL', ts_ms: this.ts, order_id, user_id });
  }

  amend(order_id: number, user_id: number, change: { price_ticks?: number; qty_wh?: number }): EngineEvent[] {
    return this.run({ type: 'AMEND', ts_ms: this.ts, order_id, user_id, ...change });
  }
}

export function types(events: EngineEvent[]): string[] {
  return events.map((e) => e.type);
}

/** The events without BOOK_LEVEL noise, as [type, key fields] tuples for compact assertions. */
export function brief(events: EngineEvent[]): unknown[] {
  const out: unknown[] = [];
  for (const e of events) {
    switch (e.type) {
      case 'ACCEPTED':
        out.push(['ACCEPTED', e.order_id]);
        break;
      case 'REJECTED':
        out.push(['REJECTED', e.order_id, e.reason]);
        break;
      case 'FILL':
        out.push(['FILL', e.maker_order_id, e.taker_order_id, e.price_ticks, e.qty_wh]);
        break;
      case 'CANCELLED':
        out.push(['CANCELLED', e.order_id, e.reason, e.qty_wh]);
        break;
      case 'EXPIRED':
        out.push(['EXPIRED', e.order_id, e.cause, e.qty_wh]);
        break;
      case 'AMENDED':
        out.push(['AMENDED', e.order_id, e.priority_kept]);
        break;
      case 'BOOK_LEVEL':
        break;
      default:
        out.push([e.type]);
    }
  }
  return out;
}

export function rejection(events: EngineEvent[]): string | undefined {
  const r = events.find((e) => e.type === 'REJECTED');
  return r?.type === 'REJECTED' ? r.reason : undefined;
}

export function fills(events: EngineEvent[]): Extract<EngineEvent, { type: 'FILL' }>[] {
  return events.filter((e): e is Extract<EngineEvent, { type: 'FILL' }> => e.type === 'FILL');
}

/** The engine state without the counters that every event moves (event_seq, last ts). */
export function bookState(e: ZoneEngine): unknown {
  const { event_seq: _seq, last_ts_ms: _ts, ...rest } = e.serialize();
  return rest;
}
