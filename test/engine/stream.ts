// Random command streams for the property and determinism tests (fast-check arbitraries).
import fc from 'fast-check';
import type { Command, OrderType, Side, Source, StpMode } from '../../engine/index.js';

export const ZONE = 1;
export const INTERVALS = [100, 101, 102];
const SOURCES: Source[] = ['ANY', 'SOLAR', 'WIND', 'BATTERY', 'HYDRO'];

type Op =
  | { k: 'place'; user: number; side: Side; src: number; type: OrderType; stp: StpMode | undefined; price: number; qty: number; iv: number; gtd: number | null }
  | { k: 'cancel'; pick: number; wrongUser: boolean }
  | { k: 'amend'; pick: number; price: number | null; qty: number | null }
  | { k: 'mass'; scope: 'USER' | 'USER_ZONE' | 'INTERVAL'; user: number; iv: number }
  | { k: 'halt'; policy: 'CANCEL_RESTING' | 'KEEP_RESTING' }
  | { k: 'maintenance' }
  | { k: 'resume' }
  | { k: 'gate'; iv: number; go: number }
  | { k: 'tick'; dt: number };

const placeArb = fc.record({
  k: fc.constant('place' as const),
  user: fc.integer({ min: 1, max: 4 }),
  side: fc.constantFrom<Side>('BUY', 'SELL'),
  src: fc.constantFrom(0, 0, 0, 1, 2, 3, 4), // BUYs often ANY; a SELL's 0 becomes SOLAR
  type: fc.constantFrom<OrderType>('LIMIT', 'LIMIT', 'LIMIT', 'MARKET', 'IOC', 'FOK', 'POST_ONLY'),
  stp: fc.constantFrom<StpMode | undefined>(undefined, 'CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'),
  price: fc.integer({ min: 96, max: 104 }),
  qty: fc.integer({ min: 1, max: 20 }),
  iv: fc.constantFrom(0, 1, 2, 2, 2, 2),
  gtd: fc.option(fc.integer({ min: 1, max: 60 }), { freq: 4 }),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 60, arbitrary: placeArb },
  { weight: 12, arbitrary: fc.record({ k: fc.constant('cancel' as const), pick: fc.nat(), wrongUser: fc.integer({ min: 0, max: 9 }).map((x) => x === 0) }) },
  {
    weight: 12,
    arbitrary: fc.record({
      k: fc.constant('amend' as const),
      pick: fc.nat(),
      price: fc.option(fc.integer({ min: 95, max: 105 })),
      qty: fc.option(fc.integer({ min: 0, max: 25 })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('mass' as const), scope: fc.constantFrom('USER' as const, 'USER_ZONE' as const, 'INTERVAL' as const), user: fc.integer({ min: 1, max: 4 }), iv: fc.integer({ min: 0, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('halt' as const), policy: fc.constantFrom('CANCEL_RESTING' as const, 'KEEP_RESTING' as const, 'KEEP_RESTING' as const) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'maintenance' as const }) },
  { weight: 16, arbitrary: fc.constant({ k: 'resume' as const }) },
  // the last interval never closes, so long streams keep trading
  { weight: 1, arbitrary: fc.record({ k: fc.constant('gate' as const), iv: fc.integer({ min: 0, max: 1 }), go: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('tick' as const), dt: fc.integer({ min: 1, max: 20 }) }) },
);

export interface Stream {
  commands: Command[];
  capacities: number[];
  sellerLimits: { user: number; iv: number; limit: number }[];
}

export const setupArb = fc.record({
  capacities: fc.tuple(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 50, max: 2000 }), fc.constant(1e12)),
  sellerLimits: fc.array(fc.record({ user: fc.integer({ min: 1, max: 4 }), iv: fc.integer({ min: 0, max: 2 }), limit: fc.integer({ min: 0, max: 200 }) }), { maxLength: 4 }),
});

/** An arbitrary command stream: zone setup, intervals, seller limits, then the random ops. */
export function streamArb(minLength: number, maxLength: number): fc.Arbitrary<Stream> {
  return fc.tuple(setupArb, fc.array(opArb, { minLength, maxLength })).map(([setup, ops]) => ({
    commands: toCommands(setup.capacities, setup.sellerLimits, ops),
    capacities: setup.capacities,
    sellerLimits: setup.sellerLimits,
  }));
}

function toCommands(capacities: number[], sellerLimits: { user: number; iv: number; limit: number }[], ops: Op[]): Command[] {
  let ts = 1_000;
  const cmds: Command[] = [
    { type: 'CONFIGURE_ZONE', ts_ms: ts, zone_id: ZONE, price_step_ticks: 1, lot_wh: 1, band_min_ticks: 90, band_max_ticks: 110, min_qty_wh: 1, max_qty_wh: 50, max_open_orders_per_user: 150 },
  ];
  INTERVALS.forEach((iv, i) => cmds.push({ type: 'OPEN_INTERVAL', ts_ms: ts, interval_id: iv, capacity_wh: capacities[i] }));
  for (const s of sellerLimits) cmds.push({ type: 'SET_SELLER_LIMIT', ts_ms: ts, user_id: s.user, interval_id: INTERVALS[s.iv], limit_wh: s.limit });
  const placed: { id: number; user: number }[] = [];
  let nextId = 1;
  for (const op of ops) {
    switch (op.k) {
      case 'place': {
        const id = nextId++;
        placed.push({ id, user: op.user });
        const src = op.side === 'SELL' && op.src === 0 ? 1 : op.src;
        const canRest = op.type === 'LIMIT' || op.type === 'POST_ONLY';
        cmds.push({
          type: 'PLACE',
          ts_ms: ts,
          order_id: id,
          user_id: op.user,
          client_order_id: `c${id}`,
          zone_id: ZONE,
          interval_id: INTERVALS[op.iv],
          side: op.side,
          source: SOURCES[src],
          order_type: op.type,
          price_ticks: op.price,
          qty_wh: op.qty,
          ...(op.stp === undefined ? {} : { stp: op.stp }),
          ...(op.gtd !== null && canRest ? { expire_at_ms: ts + op.gtd } : {}),
        });
        break;
      }
      case 'cancel': {
        if (placed.length === 0) break;
        const p = recent(placed, op.pick);
        cmds.push({ type: 'CANCEL', ts_ms: ts, order_id: p.id, user_id: op.wrongUser ? p.user + 1 : p.user });
        break;
      }
      case 'amend': {
        if (placed.length === 0) break;
        const p = recent(placed, op.pick);
        cmds.push({ type: 'AMEND', ts_ms: ts, order_id: p.id, user_id: p.user, ...(op.price === null ? {} : { price_ticks: op.price }), ...(op.qty === null ? {} : { qty_wh: op.qty }) });
        break;
      }
      case 'mass':
        cmds.push({ type: 'MASS_CANCEL', ts_ms: ts, scope: op.scope, user_id: op.user, zone_id: ZONE, interval_id: INTERVALS[op.iv] });
        break;
      case 'halt':
        cmds.push({ type: 'HALT', ts_ms: ts, policy: op.policy });
        break;
      case 'maintenance':
        cmds.push({ type: 'MAINTENANCE', ts_ms: ts });
        break;
      case 'resume':
        cmds.push({ type: 'RESUME', ts_ms: ts });
        break;
      case 'gate':
        if (op.go !== 0) break; // rare: a closed interval stays closed
        cmds.push({ type: 'GATE_CLOSE', ts_ms: ts, interval_id: INTERVALS[op.iv] });
        break;
      case 'tick':
        ts += op.dt;
        cmds.push({ type: 'EXPIRE_DUE', ts_ms: ts });
        break;
    }
  }
  return cmds;
}

/** Cancels and amends mostly aim at recent orders, so that many of them hit an open one. */
function recent<T>(placed: T[], pick: number): T {
  const window = Math.min(placed.length, pick % 5 === 0 ? placed.length : 25);
  return placed[placed.length - 1 - (pick % window)];
}
