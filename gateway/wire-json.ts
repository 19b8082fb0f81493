// Hand-written JSON for the hottest outgoing messages (private `order` and `fill` updates, the ack
// of a place): one template literal per message instead of fast-json-stringify's ~4 string
// appends per field and per-character escape scan of every string.
//
// The bytes are exactly fast-json-stringify's for the same object and schema (protocol.ts
// OUT_SCHEMAS; test/gateway/wire-json.test.ts checks it on random messages): the fast path is
// taken only when every field is present with its schema type (integers as Numbers, strings that
// need no escaping: no control character, quote, backslash or surrogate); anything else (an absent
// field, a null string, a string that needs escaping, a BigInt, a toJSON…) returns null and the
// caller uses the schema-driven serialiser.

/** True when JSON writes s as '"' + s + '"' (no character that JSON.stringify escapes). */
export function plain(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return false;
  }
  return true;
}

const int = Number.isInteger as (v: unknown) => v is number;

type Obj = Record<string, unknown>;

/** `order` (ORDER_FIELDS, seq, ts), or null: use the schema serialiser. */
export function orderJson(m: Obj): string | null {
  const order_id = m.order_id, client_order_id = m.client_order_id, zone_id = m.zone_id, interval_id = m.interval_id;
  const side = m.side, order_type = m.order_type, source = m.source, price = m.price, qty = m.qty;
  const filled_qty = m.filled_qty, remaining_qty = m.remaining_qty, status = m.status, reason = m.reason;
  const seq = m.seq, ts = m.ts;
  if (
    m.toJSON !== undefined || !int(order_id) || !plain(client_order_id) || !int(zone_id) || !int(interval_id) || !plain(side) || !plain(order_type) ||
    !plain(source) || !plain(price) || !plain(qty) || !plain(filled_qty) || !plain(remaining_qty) || !plain(status) || !int(seq) || !int(ts)
  ) return null;
  let r: string;
  if (reason === null) r = 'null';
  else if (plain(reason)) r = `"${reason}"`;
  else return null;
  return `{"type":"order","order_id":${order_id},"client_order_id":"${client_order_id}","zone_id":${zone_id},"interval_id":${interval_id},"side":"${side}","order_type":"${order_type}","source":"${source}","price":"${price}","qty":"${qty}","filled_qty":"${filled_qty}","remaining_qty":"${remaining_qty}","status":"${status}","reason":${r},"seq":${seq},"ts":${ts}}`;
}

/** `fill`, or null: use the schema serialiser. */
export function fillJson(m: Obj): string | null {
  const trade_id = m.trade_id, order_id = m.order_id, client_order_id = m.client_order_id, zone_id = m.zone_id, interval_id = m.interval_id;
  const side = m.side, price = m.price, qty = m.qty, source = m.source, liquidity = m.liquidity, seq = m.seq, ts = m.ts;
  if (
    m.toJSON !== undefined || !int(trade_id) || !int(order_id) || !plain(client_order_id) || !int(zone_id) || !int(interval_id) || !plain(side) ||
    !plain(price) || !plain(qty) || !plain(source) || !plain(liquidity) || !int(seq) || !int(ts)
  ) return null;
  return `{"type":"fill","trade_id":${trade_id},"order_id":${order_id},"client_order_id":"${client_order_id}","zone_id":${zone_id},"interval_id":${interval_id},"side":"${side}","price":"${price}","qty":"${qty}","source":"${source}","liquidity":"${liquidity}","seq":${seq},"ts":${ts}}`;
}

/** The fills of an ack ([{trade_id, price, qty, source}]), or null. */
function fillsJson(fills: unknown): string | null {
  if (!Array.isArray(fills)) return null;
  let s = '[';
  for (let i = 0; i < fills.length; i++) {
    const f = fills[i] as Obj | null;
    if (typeof f !== 'object' || f === null || f.toJSON !== undefined) return null;
    const trade_id = f.trade_id, price = f.price, qty = f.qty, source = f.source;
    if (!int(trade_id) || !plain(price) || !plain(qty) || !plain(source)) return null;
    s += `${i === 0 ? '' : ','}{"trade_id":${trade_id},"price":"${price}","qty":"${qty}","source":"${source}"}`;
  }
  return s + ']';
}

/**
 * `ack` of a place (req_id, op, ORDER_FIELDS, fills; no priority_kept, no cancelled), or null:
 * other acks (cancel, amend, mass cancel) and anything unusual use the schema serialiser.
 */
export function placeAckJson(m: Obj): string | null {
  if (m.toJSON !== undefined || m.priority_kept !== undefined || m.cancelled !== undefined) return null;
  return ackText(
    m.req_id, m.op, m.order_id, m.client_order_id, m.zone_id, m.interval_id, m.side, m.order_type, m.source, m.price, m.qty, m.filled_qty, m.remaining_qty, m.status,
    m.reason, m.fills,
  );
}

/**
 * The JSON of the ack `{type: 'ack', req_id, op, order_id, …, reason, fills}` straight from its
 * fields (no object built just to be serialised): what placeAckJson writes for that object, or
 * null when it would step aside.
 */
export function ackText(
  req_id: unknown, op: unknown, order_id: unknown, client_order_id: unknown, zone_id: unknown, interval_id: unknown, side: unknown, order_type: unknown,
  source: unknown, price: unknown, qty: unknown, filled_qty: unknown, remaining_qty: unknown, status: unknown, reason: unknown, fillList: unknown,
): string | null {
  if (
    !plain(op) || !int(order_id) || !plain(client_order_id) || !int(zone_id) || !int(interval_id) || !plain(side) || !plain(order_type) || !plain(source) ||
    !plain(price) || !plain(qty) || !plain(filled_qty) || !plain(remaining_qty) || !plain(status)
  ) return null;
  let q: string;
  if (req_id === null) q = 'null';
  else if (int(req_id)) q = `${req_id}`;
  else if (typeof req_id === 'string') q = JSON.stringify(req_id); // fast-json-stringify's asString writes what JSON.stringify writes
  else return null; // absent, or a type the schema serialiser decides about
  let r: string;
  if (reason === null) r = 'null';
  else if (plain(reason)) r = `"${reason}"`;
  else return null;
  const fills = fillsJson(fillList);
  if (fills === null) return null;
  return `{"type":"ack","req_id":${q},"op":"${op}","order_id":${order_id},"client_order_id":"${client_order_id}","zone_id":${zone_id},"interval_id":${interval_id},"side":"${side}","order_type":"${order_type}","source":"${source}","price":"${price}","qty":"${qty}","filled_qty":"${filled_qty}","remaining_qty":"${remaining_qty}","status":"${status}","reason":${r},"fills":${fills}}`;
}
