// The WebSocket protocol: one JSON schema per message. Incoming schemas validate what clients
// send; outgoing schemas drive fast-json-stringify (JSON frames) and document MessagePack frames,
// which carry the same objects. docs/protocol.md lists every message with an example.
import fastJson from 'fast-json-stringify';
import { encode as msgpackEncode } from '@msgpack/msgpack';
import { compile, type JsonSchema, type Validator } from './validate.js';
import { MAX_BATCH_ORDERS } from './limits.js';
import { fillJson, orderJson, placeAckJson } from './wire-json.js';

export const PROTOCOL_VERSION = 1;
/** Subprotocol a client offers to get MessagePack binary frames (or `?encoding=msgpack`). */
export const MSGPACK_SUBPROTOCOL = 'kwx.msgpack';
export const JSON_SUBPROTOCOL = 'kwx.json';

const REQ_ID: JsonSchema = { type: ['string', 'integer'], maxLength: 64, description: 'echoed in the reply' };
const ID: JsonSchema = { type: 'integer', minimum: 1 };
const DECIMAL: JsonSchema = { type: 'string', pattern: '^-?(0|[1-9][0-9]{0,17})(\\.[0-9]{1,18})?$', maxLength: 40 };
const CHANNELS = ['book', 'trades', 'ticker', 'status'] as const;
export type ChannelKind = (typeof CHANNELS)[number];

function msg(type: string, props: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['type', ...required],
    properties: { type: { const: type }, req_id: REQ_ID, ...props },
  };
}

/** A place's fields (besides `type`): a `place` message, and each order of a `place_batch`. */
const PLACE_FIELDS: Record<string, JsonSchema> = {
  zone_id: ID,
  interval_id: ID,
  client_order_id: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[\\x21-\\x7e]+$' },
  side: { enum: ['BUY', 'SELL'] },
  order_type: { enum: ['LIMIT', 'MARKET', 'IOC', 'FOK', 'POST_ONLY'] },
  source: { enum: ['ANY', 'SOLAR', 'WIND', 'BATTERY', 'HYDRO'] },
  price: DECIMAL,
  qty: DECIMAL,
  stp: { enum: ['CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH'] },
  expire_at_ms: { type: 'integer', minimum: 1 },
};
const PLACE_REQUIRED = ['zone_id', 'interval_id', 'client_order_id', 'side', 'order_type', 'price', 'qty'];

export const IN_SCHEMAS = {
  login: msg(
    'login',
    {
      key_id: { type: 'string', pattern: '^[A-Za-z0-9_-]{8,64}$' },
      ts: { type: 'integer', minimum: 0, description: 'client time, ms since the epoch' },
      nonce: { type: 'string', pattern: '^[A-Za-z0-9_-]{16,64}$' },
      sig: { type: 'string', maxLength: 200, pattern: '^[A-Za-z0-9+/=_-]+$' },
      cancel_on_disconnect: { type: 'boolean' },
    },
    ['key_id', 'ts', 'nonce', 'sig'],
  ),
  ping: msg('ping', {}),
  subscribe: msg('subscribe', { channel: { enum: CHANNELS }, zone_id: ID, interval_id: ID }, ['channel', 'zone_id']),
  unsubscribe: msg('unsubscribe', { channel: { enum: CHANNELS }, zone_id: ID, interval_id: ID }, ['channel', 'zone_id']),
  resync: msg('resync', { channel: { const: 'book' }, zone_id: ID, interval_id: ID }, ['channel', 'zone_id', 'interval_id']),
  place: msg('place', PLACE_FIELDS, PLACE_REQUIRED),
  // the frame's shape; each order is checked against PLACE_ORDER_VALIDATORS (below) before any is submitted
  place_batch: msg('place_batch', { orders: { type: 'array', minItems: 1, maxItems: MAX_BATCH_ORDERS } }, ['orders']),
  cancel: msg('cancel', { order_id: ID }, ['order_id']),
  amend: msg('amend', { order_id: ID, price: DECIMAL, qty: DECIMAL }, ['order_id']),
  mass_cancel: msg('mass_cancel', { zone_id: ID }),
  order_status: msg('order_status', { order_id: ID }, ['order_id']),
  balances: msg('balances', {}),
} satisfies Record<string, JsonSchema>;

export type InType = keyof typeof IN_SCHEMAS;
/** Null-prototype: a message type is looked up among the protocol's own types only. */
export const IN_VALIDATORS: Record<string, Validator> = Object.assign(Object.create(null) as Record<string, Validator>, Object.fromEntries(Object.entries(IN_SCHEMAS).map(([k, s]) => [k, compile(s)])));
export const TRADING_TYPES: ReadonlySet<string> = new Set(['place', 'place_batch', 'cancel', 'amend', 'mass_cancel']);
/**
 * One validator per position in a place_batch: an order is a place without `type` (`req_id`
 * optional, echoed in its own result); problems name the order (`"orders[3].price" has the wrong format`).
 */
export const PLACE_ORDER_VALIDATORS: readonly Validator[] = Array.from({ length: MAX_BATCH_ORDERS }, (_, i) =>
  compile({ type: 'object', additionalProperties: false, required: PLACE_REQUIRED, properties: { req_id: REQ_ID, ...PLACE_FIELDS } }, `orders[${i}]`),
);

// ------------------------------------------------------------------------------------------
// Outgoing

const S = { type: 'string' } as const;
const I = { type: 'integer' } as const;
const B = { type: 'boolean' } as const;
const NS = { type: ['string', 'null'] } as const;
const REQ = { type: ['string', 'integer', 'null'] } as const;
const LEVELS = { type: 'array', items: { type: 'array', items: S } } as const;

function out(type: string, props: Record<string, unknown>): Record<string, unknown> {
  return { type: 'object', properties: { type: { type: 'string', const: type }, ...props }, required: ['type'] };
}

const ORDER_FIELDS = {
  order_id: I,
  client_order_id: S,
  zone_id: I,
  interval_id: I,
  side: S,
  order_type: S,
  source: S,
  price: S,
  qty: S,
  filled_qty: S,
  remaining_qty: S,
  status: S,
  reason: NS,
};

export const OUT_SCHEMAS = {
  welcome: out('welcome', { version: I, encoding: S, heartbeat_ms: I, max_message_bytes: I, max_subscriptions: I, server_time: I }),
  logged_in: out('logged_in', { req_id: REQ, user_id: I, role: S, key_id: S, cancel_on_disconnect: B }),
  pong: out('pong', { req_id: REQ, server_time: I }),
  reject: out('reject', { req_id: REQ, op: S, code: S, message: S, limit: I, order_id: I, client_order_id: S }),
  subscribed: out('subscribed', { req_id: REQ, channel: S, zone_id: I, interval_id: I }),
  unsubscribed: out('unsubscribed', { req_id: REQ, channel: S, zone_id: I, interval_id: I }),
  ack: out('ack', {
    req_id: REQ,
    op: S,
    ...ORDER_FIELDS,
    priority_kept: B,
    cancelled: I,
    fills: { type: 'array', items: { type: 'object', properties: { trade_id: I, price: S, qty: S, source: S } } },
  }),
  // place_batch's reply: one result per order, in order, each the ack or reject a place would get
  batch: out('batch', { req_id: REQ, op: S, accepted: I, rejected: I, results: { type: 'array', items: { type: 'object', additionalProperties: true } } }),
  order_state: out('order_state', { req_id: REQ, ...ORDER_FIELDS }),
  balances: out('balances', {
    req_id: REQ,
    balances: { type: 'array', items: { type: 'object', properties: { currency: S, available: S, held: S, escrow: S } } },
  }),
  book: out('book', {
    req_id: REQ,
    zone_id: I,
    interval_id: I,
    epoch: S,
    seq: I,
    snapshot: B,
    reason: S,
    bids: LEVELS,
    asks: LEVELS,
    changes: { type: 'array', items: { type: 'array', items: S } },
    checksum: I,
    ts: I,
  }),
  trade: out('trade', { zone_id: I, interval_id: I, epoch: S, seq: I, trade_id: I, price: S, qty: S, source: S, taker_side: S, ts: I }),
  ticker: out('ticker', {
    zone_id: I,
    interval_id: I,
    epoch: S,
    seq: I,
    last: NS,
    best_bid: NS,
    best_ask: NS,
    volume: S,
    vwap: NS,
    trades: I,
    ts: I,
  }),
  status: out('status', { zone_id: I, interval_id: I, epoch: S, seq: I, zone_status: S, gate: S, ts: I }),
  heartbeat: out('heartbeat', { server_time: I }),
  order: out('order', { ...ORDER_FIELDS, seq: I, ts: I }),
  fill: out('fill', {
    trade_id: I,
    order_id: I,
    client_order_id: S,
    zone_id: I,
    interval_id: I,
    side: S,
    price: S,
    qty: S,
    source: S,
    liquidity: S,
    seq: I,
    ts: I,
  }),
  balance: out('balance', { currency: S, available: S, held: S, escrow: S, seq: I, ts: I }),
  notification: out('notification', { kind: S, title: S, body: S, ts: I }),
  closing: out('closing', { code: S, message: S }),
} as const;

export type OutType = keyof typeof OUT_SCHEMAS;
export type OutMessage = { type: OutType } & Record<string, unknown>;

const STRINGIFIERS: Record<string, (o: unknown) => string> = Object.fromEntries(
  Object.entries(OUT_SCHEMAS).map(([k, s]) => [k, fastJson(s as unknown as Parameters<typeof fastJson>[0]) as (o: unknown) => string]),
);

export type Encoding = 'json' | 'msgpack';

/** The schema-driven JSON of a message (fast-json-stringify). */
export function schemaJson(m: OutMessage): string {
  const s = STRINGIFIERS[m.type];
  if (s === undefined) throw new Error(`no schema for outgoing message type ${m.type}`);
  return s(m);
}

/** One message to frame bytes: JSON text (schema-driven) or MessagePack binary. */
export function encodeMessage(m: OutMessage, encoding: Encoding): string | Uint8Array {
  if (encoding === 'msgpack') return msgpackEncode(m, { ignoreUndefined: true });
  // the hottest types by hand (gateway/wire-json.ts: the same bytes, or null → the schema's serialiser)
  const t = m.type;
  const fast = t === 'order' ? orderJson(m) : t === 'fill' ? fillJson(m) : t === 'ack' ? placeAckJson(m) : null;
  if (fast !== null) return fast;
  const s = STRINGIFIERS[t];
  if (s === undefined) throw new Error(`no schema for outgoing message type ${m.type}`);
  return s(m);
}
