// The WebSocket endpoint (/ws): sessions, login, subscriptions, trading, limits, backpressure.
import { decode as msgpackDecode } from '@msgpack/msgpack';
import type { HttpRequest, HttpResponse, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import type { EngineEvent } from '../engine/index.js';
import { authenticate, loginPayload, OPERATOR_ROLES, TRADER_ROLES, type Principal } from './auth.js';
import { zoneOfOrder, type SubmitCommand, type SubmitResult } from './backend.js';
import type { BusMessage } from './bus.js';
import { fail, type Failure } from './codes.js';
import { Feed, FrameCache, type FeedSink } from './feeds.js';
import { fastIncrement, fastObserver } from './fast-metrics.js';
import { CLOSE, OVERSIZE_READ_FACTOR, TokenBucket } from './limits.js';
import { encodeMessage, IN_VALIDATORS, MSGPACK_SUBPROTOCOL, PLACE_ORDER_VALIDATORS, PROTOCOL_VERSION, TRADING_TYPES, type ChannelKind, type Encoding, type OutMessage } from './protocol.js';
import { bookChannel, formatMinor, statusChannel, tickerChannel, tradesChannel, userChannel, wireOrder } from './publisher.js';
import { kwhToWh, priceToTicks, ticksToPrice, UnitError, whToKwh } from './units.js';
import type { AdminDeps } from './admin.js';
import { ackText } from './wire-json.js';

/** The admin API's dependencies (backend null = market data only; trading answers EXCHANGE_UNAVAILABLE), plus the WS path. */
export interface WsDeps extends AdminDeps {
  path?: string;
}

// uWS copies the upgrade's user data into its own object: keep the session behind one reference.
interface Holder {
  session: Session;
}
type Ws = WebSocket<Holder>;

interface Session extends FeedSink {
  id: number;
  ws: Ws | null;
  encoding: Encoding;
  ip: string;
  principal: Principal | null;
  cancel_on_disconnect: boolean;
  feeds: Map<string, Feed>;
  conflating: Set<Feed>;
  bucket: TokenBucket;
  login_attempts: number;
  login_pending: boolean;
  last_send_ms: number;
  /** Frames waiting for the end-of-task flush. */
  outbox: (string | Uint8Array)[];
  outbox_bytes: number;
  /**
   * uWS's buffered bytes for this socket as last read (-1: read it again). It only grows through
   * our own writes (flush, closeWith) and only shrinks through a drain: both reset it, so within
   * a turn one native call serves every frame queued for the session.
   */
  buffered: number;
  zones_traded: Set<number>;
  closed: boolean;
}

type Msg = Record<string, unknown> & { type: string; req_id?: string | number };

interface OrderAckInfo {
  ack: Record<string, unknown> | null;
  /** The ack's JSON text, when written straight from its fields (ack is then null). */
  text: string | null;
  reject: Failure | null;
}

const TEXT = new TextDecoder();

export interface WsEndpoint {
  sessions(): number;
  bufferedBytes(): number;
  close(): void;
}

export function attachWebSocket(d: WsDeps): WsEndpoint {
  const { limits, metrics, now } = d;
  let nextId = 1;
  const sessions = new Set<Session>();
  const feeds = new Map<string, Feed>();
  const userFeeds = new Map<number, { sessions: Set<Session>; off: Promise<() => void> }>();
  const keySessions = new Map<string, number>();
  const keyBuckets = new Map<string, TokenBucket>();

  // ---- sending ----------------------------------------------------------------------------
  // Frames are queued per session and written in one cork per session once the current event-loop
  // turn's callbacks and microtasks are done (setImmediate: the check phase right after uWS's poll):
  // one syscall per session for everything the turn produced — the private updates published while
  // the command commits AND the ack resolved a few microtasks later, for every session at once.
  // (A microtask flush ran before the ack's continuation and wrote each order twice.)
  const dirty = new Set<Session>();
  let flushScheduled = false;
  // The session being written and its frames: one cork callback for all (no closure per session per turn).
  let corkSession: Session | null = null;
  let corkFrames: (string | Uint8Array)[] = [];
  const writeCorked = (): void => {
    const s = corkSession!;
    const ws = s.ws!;
    const frames = corkFrames;
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i];
      if (ws.send(f, typeof f !== 'string') === 2) {
        metrics.dropped_sends.inc();
        for (const feed of s.feeds.values()) if (feed.kind === 'book') s.conflating.add(feed);
      }
    }
  };
  const flush = (): void => {
    flushScheduled = false;
    for (const s of dirty) {
      const ws = s.ws;
      const frames = s.outbox;
      s.outbox = [];
      s.outbox_bytes = 0;
      s.buffered = -1;
      if (ws === null || s.closed) continue;
      corkSession = s;
      corkFrames = frames;
      try {
        ws.cork(writeCorked);
      } finally {
        corkSession = null;
        corkFrames = [];
      }
    }
    dirty.clear();
  };
  const sendRaw = (s: Session, bytes: string | Uint8Array): number => {
    if (s.ws === null || s.closed) return 2;
    s.outbox.push(bytes);
    s.outbox_bytes += bytes.length;
    s.last_send_ms = now();
    dirty.add(s);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
    return 1;
  };
  const send = (s: Session, m: OutMessage): void => {
    if (s.closed) return;
    sendRaw(s, encodeMessage(m, s.encoding));
  };
  const closeWith = (s: Session, code: number, reason: string): void => {
    if (s.closed || s.ws === null) return;
    const ws = s.ws;
    const pending = s.outbox;
    s.outbox = [];
    s.outbox_bytes = 0;
    s.buffered = -1;
    // what was queued before the close (e.g. the reject that explains it) goes out first
    ws.cork(() => {
      for (const f of pending) ws.send(f, typeof f !== 'string');
    });
    ws.end(code, reason);
  };
  const bufferedOf = (s: Session, ws: Ws): number => {
    if (s.buffered < 0) s.buffered = ws.getBufferedAmount();
    return s.buffered;
  };
  const tooSlow = (s: Session): boolean => {
    const ws = s.ws;
    if (ws === null) return true;
    const b = bufferedOf(s, ws) + s.outbox_bytes;
    if (b > limits.disconnect_buffered_bytes) {
      metrics.slow_consumer_disconnects.inc();
      closeWith(s, CLOSE.SLOW_CONSUMER, 'SLOW_CONSUMER: too many bytes buffered');
      return true;
    }
    return false;
  };
  const frame = (s: Session, msg: BusMessage, frames: FrameCache): string | Uint8Array => {
    if (s.encoding === 'json') return (frames.json ??= encodeMessage(msg as OutMessage, 'json') as string);
    return (frames.msgpack ??= encodeMessage(msg as OutMessage, 'msgpack') as Uint8Array);
  };

  const newSession = (encoding: Encoding, ip: string): Session => {
    const s: Session = {
      id: nextId++,
      ws: null,
      encoding,
      ip,
      principal: null,
      cancel_on_disconnect: false,
      feeds: new Map(),
      conflating: new Set(),
      bucket: new TokenBucket(limits.conn_msgs_burst, limits.conn_msgs_per_s, now()),
      login_attempts: 0,
      login_pending: false,
      last_send_ms: now(),
      outbox: [],
      outbox_bytes: 0,
      buffered: -1,
      zones_traded: new Set(),
      closed: false,
      deliver(feed, msg, frames) {
        if (s.closed) return;
        if (feed.kind === 'book') {
          if (s.conflating.has(feed)) {
            metrics.conflated_updates.inc();
            return;
          }
          if (tooSlow(s)) return;
          if (bufferedOf(s, s.ws!) + s.outbox_bytes > limits.conflate_buffered_bytes) {
            s.conflating.add(feed);
            metrics.conflated_updates.inc();
            return;
          }
          sendRaw(s, frame(s, msg, frames));
          return;
        }
        if (tooSlow(s)) return;
        sendRaw(s, frame(s, msg, frames));
      },
      snapshot(feed, reason, req_id = null) {
        if (s.closed || !feed.ready) return;
        s.conflating.delete(feed);
        if (reason !== 'SUBSCRIBE') metrics.resyncs.inc({ reason });
        if (feed.kind === 'book') sendRaw(s, encodeMessage({ ...feed.snapshotMessage(reason), ...(req_id === null ? {} : { req_id }) } as OutMessage, s.encoding));
        else if (feed.last !== null) sendRaw(s, encodeMessage(feed.last as OutMessage, s.encoding));
      },
    };
    return s;
  };

  // ---- replies ----------------------------------------------------------------------------
  const reqId = (m: Msg | null): string | number | null => {
    const r = m?.req_id;
    return typeof r === 'string' || typeof r === 'number' ? r : null;
  };
  const reject = (s: Session, op: string, m: Msg | null, f: Failure, extra: Record<string, unknown> = {}): void => {
    metrics.rejects.inc({ op, code: f.code });
    send(s, { type: 'reject', req_id: reqId(m), op, code: f.code, message: f.message, ...(f.limit === undefined ? {} : { limit: f.limit }), ...extra });
  };

  // ---- feeds ------------------------------------------------------------------------------
  const channelOf = (kind: ChannelKind, zone_id: number, interval_id: number): string => {
    switch (kind) {
      case 'book':
        return bookChannel(zone_id, interval_id);
      case 'trades':
        return tradesChannel(zone_id, interval_id);
      case 'ticker':
        return tickerChannel(zone_id, interval_id);
      default:
        return statusChannel(zone_id);
    }
  };
  const feedFor = (kind: ChannelKind, zone_id: number, interval_id: number): Feed => {
    const ch = channelOf(kind, zone_id, interval_id);
    let f = feeds.get(ch);
    if (f === undefined) {
      f = new Feed(ch, kind, zone_id, interval_id, d.bus, (reason) => metrics.resyncs.inc({ reason }));
      feeds.set(ch, f);
      void f.open();
    }
    return f;
  };
  const leaveFeed = (s: Session, f: Feed): void => {
    f.subscribers.delete(s);
    s.feeds.delete(f.channel);
    s.conflating.delete(f);
    metrics.subscriptions.dec();
    if (f.subscribers.size === 0) {
      f.close();
      feeds.delete(f.channel);
    }
  };
  const joinUser = (s: Session, user_id: number): void => {
    let u = userFeeds.get(user_id);
    if (u === undefined) {
      const set = new Set<Session>();
      const off = d.bus.subscribe(userChannel(user_id), (msg) => {
        const frames = new FrameCache();
        for (const x of set) if (!tooSlow(x)) sendRaw(x, frame(x, msg, frames));
      });
      u = { sessions: set, off };
      userFeeds.set(user_id, u);
    }
    u.sessions.add(s);
  };
  const leaveUser = (s: Session, user_id: number): void => {
    const u = userFeeds.get(user_id);
    if (u === undefined) return;
    u.sessions.delete(s);
    if (u.sessions.size === 0) {
      userFeeds.delete(user_id);
      void u.off.then((off) => off());
    }
  };

  // ---- handlers ---------------------------------------------------------------------------
  const onLogin = async (s: Session, m: Msg): Promise<void> => {
    if (s.principal !== null || s.login_pending) return reject(s, 'login', m, fail('ALREADY_LOGGED_IN', 'this connection is already logged in'));
    s.login_attempts++;
    if (s.login_attempts > limits.max_login_attempts) {
      reject(s, 'login', m, fail('UNAUTHORIZED', 'too many login attempts', limits.max_login_attempts));
      return closeWith(s, CLOSE.TOO_MANY_LOGIN_ATTEMPTS, 'TOO_MANY_LOGIN_ATTEMPTS');
    }
    const key_id = m.key_id as string;
    const ts = m.ts as number;
    const nonce = m.nonce as string;
    s.login_pending = true;
    let r: Principal | Failure;
    try {
      r = await authenticate(d.sql, d.bus, { key_id, ts, nonce, sig: m.sig as string, payload: loginPayload(key_id, ts, nonce) }, now(), limits.auth_max_skew_ms);
    } catch (err) {
      r = fail('EXCHANGE_UNAVAILABLE', `cannot check the key now: ${(err as Error).message}`);
    } finally {
      s.login_pending = false;
    }
    if (s.closed) return;
    if ('code' in r) return reject(s, 'login', m, r);
    const count = keySessions.get(r.key_id) ?? 0;
    if (count >= limits.max_sessions_per_key) {
      return reject(s, 'login', m, fail('TOO_MANY_SESSIONS', `key ${r.key_id} already has ${count} sessions`, limits.max_sessions_per_key));
    }
    keySessions.set(r.key_id, count + 1);
    s.principal = r;
    s.cancel_on_disconnect = m.cancel_on_disconnect === true;
    joinUser(s, r.user_id);
    send(s, { type: 'logged_in', req_id: reqId(m), user_id: r.user_id, role: r.role, key_id: r.key_id, cancel_on_disconnect: s.cancel_on_disconnect });
    metrics.messages.inc({ type: 'login', outcome: 'ok' });
  };

  const onSubscribe = async (s: Session, m: Msg): Promise<void> => {
    const kind = m.channel as ChannelKind;
    const zone_id = m.zone_id as number;
    const interval_id = (m.interval_id as number | undefined) ?? 0;
    if (kind !== 'status' && interval_id === 0) return reject(s, m.type, m, fail('INVALID_FIELD', `channel ${kind} needs interval_id`));
    const ch = channelOf(kind, zone_id, interval_id);
    if (m.type === 'unsubscribe') {
      const f = s.feeds.get(ch);
      if (f === undefined) return reject(s, 'unsubscribe', m, fail('NOT_SUBSCRIBED', `not subscribed to ${ch}`));
      leaveFeed(s, f);
      return send(s, { type: 'unsubscribed', req_id: reqId(m), channel: kind, zone_id, interval_id });
    }
    if (s.feeds.has(ch)) return send(s, { type: 'subscribed', req_id: reqId(m), channel: kind, zone_id, interval_id });
    if (s.feeds.size >= limits.max_subscriptions_per_connection) {
      return reject(s, 'subscribe', m, fail('TOO_MANY_SUBSCRIPTIONS', `at most ${limits.max_subscriptions_per_connection} subscriptions per connection`, limits.max_subscriptions_per_connection));
    }
    if ((await d.catalog.load(zone_id)) === undefined) return reject(s, 'subscribe', m, fail('UNKNOWN_ZONE', `zone ${zone_id} does not exist`));
    if (s.closed) return;
    const f = feedFor(kind, zone_id, interval_id);
    f.subscribers.add(s);
    s.feeds.set(ch, f);
    metrics.subscriptions.inc();
    send(s, { type: 'subscribed', req_id: reqId(m), channel: kind, zone_id, interval_id });
    if (f.ready) s.snapshot(f, 'SUBSCRIBE');
  };

  /** The session's principal if it may trade here (else the reply is sent and null returned); no rate limit taken. */
  const traderOf = (s: Session, op: string, m: Msg): Principal | null => {
    const p = s.principal;
    if (p === null) {
      reject(s, op, m, fail('UNAUTHORIZED', 'log in to trade (anonymous sessions get public market data only)'));
      return null;
    }
    if (!TRADER_ROLES.has(p.role)) {
      reject(s, op, m, fail('FORBIDDEN', `role ${p.role} may not trade`));
      return null;
    }
    if (d.backend === null) {
      reject(s, op, m, fail('EXCHANGE_UNAVAILABLE', 'this gateway does not take orders'));
      return null;
    }
    return p;
  };
  const keyBucket = (p: Principal): TokenBucket => {
    let b = keyBuckets.get(p.key_id);
    if (b === undefined) keyBuckets.set(p.key_id, (b = new TokenBucket(limits.key_orders_burst, limits.key_orders_per_s, now())));
    return b;
  };
  const rateLimited = (): Failure => fail('RATE_LIMITED', `at most ${limits.key_orders_per_s} trading messages per second per key`, limits.key_orders_per_s);
  const requireTrader = (s: Session, op: string, m: Msg): Principal | null => {
    const p = traderOf(s, op, m);
    if (p === null) return null;
    if (!keyBucket(p).take(now())) {
      reject(s, op, m, rateLimited());
      return null;
    }
    return p;
  };

  const d_funds = d.funds;
  // prom-client resolves label sets by hashing on every call: keep the children of the hot path,
  // one Map per metric keyed by the type or op itself (no key string built per message).
  type Inc = () => void;
  type Observe = (v: number) => void;
  const cached = <T>(map: Map<string, T>, key: string, make: () => T): T => {
    let c = map.get(key);
    if (c === undefined) map.set(key, (c = make()));
    return c;
  };
  const ackCounters = new Map<string, Inc>();
  const ackLatencies = new Map<string, Observe>();
  const okCounters = new Map<string, Inc>();
  const durations = new Map<string, Observe>();
  const countAck = (op: string): void => cached(ackCounters, op, () => fastIncrement(metrics.acks, { op }))();
  const observeAck = (op: string, seconds: number): void => cached(ackLatencies, op, () => fastObserver(metrics.ack_latency, { op }))(seconds);
  const submit = async (op: string, zone_id: number, cmd: SubmitCommand): Promise<SubmitResult> => {
    const t0 = performance.now();
    let r: SubmitResult;
    try {
      r = await d.backend!.submit(zone_id, cmd);
    } catch (err) {
      r = { ok: false, code: 'EXCHANGE_UNAVAILABLE', message: (err as Error).message };
    }
    // Ledger changes the reply reports (holds bound, fills escrowed, releases) are durable first.
    const durable = d_funds.durable();
    if (durable !== null) {
      try {
        await durable;
      } catch (err) {
        // The engine did execute it: the outcome follows on the private stream once the ledger is durable again.
        r = {
          ok: false, code: 'EXCHANGE_UNAVAILABLE',
          message: `executed by the engine, but its ledger effects are not durable yet (${(err as Error).message}); the outcome follows on your private stream`,
        };
      }
    }
    observeAck(op, (performance.now() - t0) / 1e3);
    return r;
  };

  /**
   * The ack (or reject) of a place from its committed events. For a JSON session the ack is
   * written straight from its fields (wire-json.ts ackText: the bytes encodeMessage writes for the
   * object below), without building the object just to serialise it.
   */
  const orderOutcome = (events: EngineEvent[], order_id: number, zone_id: number, reqId: string | number | null, json: boolean): OrderAckInfo => {
    const unit = d.catalog.get(zone_id)!.unit;
    let accepted: Extract<EngineEvent, { type: 'ACCEPTED' }> | null = null;
    let filled = 0;
    let status = 'ACTIVE';
    let reason: string | null = null;
    const fills: Record<string, unknown>[] = [];
    for (const e of events) {
      if (e.type === 'REJECTED') return { ack: null, text: null, reject: fail(e.reason, `rejected by the engine: ${e.reason}`) };
      if (e.type === 'ACCEPTED' && e.order_id === order_id) {
        accepted = e;
      } else if (e.type === 'FILL' && (e.taker_order_id === order_id || e.maker_order_id === order_id)) {
        filled += e.qty_wh;
        fills.push({ trade_id: e.trade_id, price: ticksToPrice(e.price_ticks, unit), qty: whToKwh(e.qty_wh), source: e.source });
      } else if ((e.type === 'CANCELLED' || e.type === 'EXPIRED') && e.order_id === order_id) {
        status = e.type;
        reason = e.type === 'CANCELLED' ? e.reason : e.cause;
      }
    }
    if (accepted === null) return { ack: null, text: null, reject: fail('INTERNAL', 'the engine returned no result for the order') };
    const qty = accepted.qty_wh;
    if (status === 'ACTIVE') status = filled === qty ? 'MATCHED' : filled > 0 ? 'PARTIALLY_FILLED' : 'ACTIVE';
    const open = status === 'ACTIVE' || status === 'PARTIALLY_FILLED';
    const price = ticksToPrice(accepted.price_ticks, unit);
    const qtyKwh = whToKwh(qty);
    const filledKwh = whToKwh(filled);
    const remainingKwh = whToKwh(open ? qty - filled : 0);
    if (json) {
      const text = ackText(
        reqId, 'place', order_id, accepted.client_order_id, zone_id, accepted.interval_id, accepted.side, accepted.order_type, accepted.source, price, qtyKwh,
        filledKwh, remainingKwh, status, reason, fills,
      );
      if (text !== null) return { ack: null, text, reject: null };
    }
    const ack: Record<string, unknown> = {
      type: 'ack', req_id: reqId, op: 'place', order_id, client_order_id: accepted.client_order_id, zone_id, interval_id: accepted.interval_id, side: accepted.side,
      order_type: accepted.order_type, source: accepted.source, price, qty: qtyKwh,
    };
    ack.filled_qty = filledKwh;
    ack.remaining_qty = remainingKwh;
    ack.status = status;
    ack.reason = reason;
    ack.fills = fills;
    return { ack, text: null, reject: null };
  };

  /**
   * A place's checks after its schema, up to (not including) submission: role, source, units and,
   * for a BUY, the funds hold (reserved here; the caller awaits its durability). A Failure is
   * answered as a reject with the order's client_order_id.
   */
  interface PreparedPlace {
    zone_id: number;
    side: 'BUY' | 'SELL';
    client_order_id: string;
    cmd: SubmitCommand;
  }
  const preparePlace = (m: Msg, p: Principal, zone: { unit: Parameters<typeof priceToTicks>[1] } | undefined): PreparedPlace | Failure => {
    const zone_id = m.zone_id as number;
    if (zone === undefined) return fail('UNKNOWN_ZONE', `zone ${zone_id} does not exist`);
    const side = m.side as 'BUY' | 'SELL';
    if (side === 'SELL' && p.role === 'CONSUMER') return fail('FORBIDDEN', 'a CONSUMER may only buy');
    const source = (m.source as string | undefined) ?? (side === 'BUY' ? 'ANY' : undefined);
    if (source === undefined) return fail('INVALID_ORDER', 'a SELL names its source (SOLAR, WIND, BATTERY or HYDRO)');
    let price_ticks: number;
    let qty_wh: number;
    try {
      price_ticks = priceToTicks(m.price as string, zone.unit);
      qty_wh = kwhToWh(m.qty as string);
    } catch (err) {
      if (err instanceof UnitError) return fail(err.code, err.message);
      throw err;
    }
    const client_order_id = m.client_order_id as string;
    if (side === 'BUY') {
      const f = d.funds.reserve({ user_id: p.user_id, client_order_id, zone_id, price_ticks, qty_wh });
      if (f !== null) return f;
    }
    const cmd = { type: 'PLACE', user_id: p.user_id, client_order_id, zone_id, interval_id: m.interval_id as number, side, source, order_type: m.order_type, price_ticks, qty_wh } as Record<string, unknown>;
    if (m.stp !== undefined) cmd.stp = m.stp;
    if (m.expire_at_ms !== undefined) cmd.expire_at_ms = m.expire_at_ms;
    return { zone_id, side, client_order_id, cmd: cmd as SubmitCommand };
  };
  /** Waits until the holds reserved so far are durable; null, or the failure to answer each held order with. */
  const holdsDurable = async (): Promise<Failure | null> => {
    const held = d.funds.durable();
    if (held === null) return null;
    try {
      await held;
      return null;
    } catch (err) {
      return fail('EXCHANGE_UNAVAILABLE', `the ledger is unavailable: ${(err as Error).message}`);
    }
  };
  /** The reject message of an order (counted), as reject() sends it. */
  const rejectMessage = (op: string, req_id: string | number | null, f: Failure, extra: Record<string, unknown>): OutMessage => {
    metrics.rejects.inc({ op, code: f.code });
    return { type: 'reject', req_id, op, code: f.code, message: f.message, ...(f.limit === undefined ? {} : { limit: f.limit }), ...extra };
  };
  /** A submitted place's answer: the ack (JSON text for a JSON session when possible) or the reject. */
  const placeAnswer = (s: Session, m: Msg, p: Principal, c: PreparedPlace, r: SubmitResult): OutMessage | string => {
    const client_order_id = c.client_order_id;
    if (!r.ok) {
      if (c.side === 'BUY') d.funds.unreserve(p.user_id, client_order_id);
      return rejectMessage('place', reqId(m), fail(r.code, r.message), { client_order_id });
    }
    const o = orderOutcome(r.events, r.order_id ?? 0, c.zone_id, reqId(m), s.encoding === 'json');
    if (o.reject !== null) return rejectMessage('place', reqId(m), o.reject, { client_order_id });
    countAck('place');
    return o.text ?? (o.ack as OutMessage);
  };
  const answer = (s: Session, a: OutMessage | string): void => {
    if (typeof a === 'string') {
      if (!s.closed) sendRaw(s, a);
    } else send(s, a);
  };

  /**
   * A cancel-on-disconnect session that closed while its holds became durable: its orders are not
   * submitted (the mass cancel at close ran before them and would not see them).
   */
  const gone = (s: Session): boolean => s.closed && s.cancel_on_disconnect;

  const onPlace = async (s: Session, m: Msg, p: Principal): Promise<void> => {
    const zone_id = m.zone_id as number;
    const zone = d.catalog.get(zone_id) ?? (await d.catalog.load(zone_id)); // known zones: no await on the order path
    const c = preparePlace(m, p, zone);
    if ('code' in c) return reject(s, 'place', m, c, { client_order_id: m.client_order_id });
    if (c.side === 'BUY') {
      // The hold is durable before the order can reach the book (a crash never leaves an unheld BUY resting).
      const f = await holdsDurable();
      if (f !== null || gone(s)) {
        d.funds.unreserve(p.user_id, c.client_order_id);
        return f === null ? undefined : reject(s, 'place', m, f, { client_order_id: c.client_order_id });
      }
    } else if (gone(s)) return; // closed (cancel-on-disconnect) while its zone was loading: its mass cancel has run
    s.zones_traded.add(zone_id);
    const r = await submit('place', zone_id, c.cmd);
    answer(s, placeAnswer(s, m, p, c, r));
  };

  /**
   * place_batch: up to MAX_BATCH_ORDERS orders in one frame. The frame and every order's shape are
   * checked first (one bad shape rejects the whole batch: nothing is submitted); then each order on
   * its own, in order: a key rate-limit token, the place checks and holds; the holds' durability
   * is awaited once, every order is submitted as its own engine command in the batch's order, and
   * one `batch` frame answers with each order's ack or reject, in order.
   */
  const onPlaceBatch = async (s: Session, m: Msg): Promise<void> => {
    const orders = m.orders as Msg[];
    for (let i = 0; i < orders.length; i++) {
      const problem = PLACE_ORDER_VALIDATORS[i](orders[i]);
      if (problem !== null) return reject(s, 'place_batch', m, fail('INVALID_FIELD', problem.message));
    }
    const p = traderOf(s, 'place_batch', m);
    if (p === null) return;
    // zones not yet loaded, before anything is reserved or submitted (known zones: no await)
    for (const o of orders) if (d.catalog.get(o.zone_id as number) === undefined) await d.catalog.load(o.zone_id as number);
    const bucket = keyBucket(p);
    const n = orders.length;
    const answers: (OutMessage | string | null)[] = new Array(n).fill(null);
    const prepared: (PreparedPlace | null)[] = new Array(n).fill(null);
    let holds = 0;
    for (let i = 0; i < n; i++) {
      const o = orders[i];
      if (!bucket.take(now())) {
        answers[i] = rejectMessage('place', reqId(o), rateLimited(), { client_order_id: o.client_order_id });
        continue;
      }
      const c = preparePlace(o, p, d.catalog.get(o.zone_id as number));
      if ('code' in c) answers[i] = rejectMessage('place', reqId(o), c, { client_order_id: o.client_order_id });
      else {
        prepared[i] = c;
        if (c.side === 'BUY') holds++;
      }
    }
    if (holds > 0) {
      // every hold of the batch durable before any of its orders can reach the book
      const f = await holdsDurable();
      if (f !== null) {
        for (let i = 0; i < n; i++) {
          const c = prepared[i];
          if (c === null || c.side !== 'BUY') continue;
          d.funds.unreserve(p.user_id, c.client_order_id);
          answers[i] = rejectMessage('place', reqId(orders[i]), f, { client_order_id: c.client_order_id });
          prepared[i] = null;
        }
      }
    }
    if (gone(s)) {
      // closed (cancel-on-disconnect) while its holds became durable or a zone was loading: its
      // mass cancel has run, so nothing is submitted and the holds go back
      for (const c of prepared) if (c !== null && c.side === 'BUY') d.funds.unreserve(p.user_id, c.client_order_id);
      return;
    }
    // submitted in the batch's order: each submit() reaches the backend before its first await
    const results: (Promise<SubmitResult> | null)[] = new Array(n).fill(null);
    for (let i = 0; i < n; i++) {
      const c = prepared[i];
      if (c === null) continue;
      s.zones_traded.add(c.zone_id);
      results[i] = submit('place', c.zone_id, c.cmd);
    }
    let accepted = 0;
    for (let i = 0; i < n; i++) {
      const c = prepared[i];
      if (c === null) continue;
      const a = placeAnswer(s, orders[i], p, c, await results[i]!);
      if (typeof a === 'string' || a.type === 'ack') accepted++;
      answers[i] = a;
    }
    if (s.closed) return;
    const req_id = reqId(m);
    if (s.encoding === 'json') {
      // each result is the JSON its own place would have been answered with
      let body = '';
      for (let i = 0; i < n; i++) {
        const a = answers[i]!;
        body += (i === 0 ? '' : ',') + (typeof a === 'string' ? a : (encodeMessage(a, 'json') as string));
      }
      sendRaw(s, `{"type":"batch","req_id":${req_id === null ? 'null' : JSON.stringify(req_id)},"op":"place_batch","accepted":${accepted},"rejected":${n - accepted},"results":[${body}]}`);
    } else {
      const list = answers.map((a) => (typeof a === 'string' ? (JSON.parse(a) as OutMessage) : a!));
      send(s, { type: 'batch', req_id, op: 'place_batch', accepted, rejected: n - accepted, results: list });
    }
  };

  /** A foreign or unknown order: the same answer either way (no existence hint). */
  const unknownOrder = (s: Session, op: string, m: Msg): void => reject(s, op, m, fail('UNKNOWN_ORDER', `no open order ${String(m.order_id)} of yours`), { order_id: m.order_id });

  const onCancelOrAmend = async (s: Session, m: Msg, p: Principal): Promise<void> => {
    const op = m.type;
    const order_id = m.order_id as number;
    const zone_id = zoneOfOrder(order_id);
    const known = d.orders?.get(order_id);
    if (known !== undefined && known.user_id !== p.user_id) return unknownOrder(s, op, m);
    const zone = zone_id > 0 ? d.catalog.get(zone_id) ?? (await d.catalog.load(zone_id)) : undefined;
    if (zone === undefined || !d.backend!.zones().includes(zone_id)) return unknownOrder(s, op, m);
    let cmd: SubmitCommand;
    if (op === 'cancel') {
      cmd = { type: 'CANCEL', order_id, user_id: p.user_id };
    } else {
      if (m.price === undefined && m.qty === undefined) return reject(s, op, m, fail('INVALID_FIELD', 'an amend changes price, qty or both'), { order_id });
      let price_ticks: number | undefined;
      let qty_wh: number | undefined;
      try {
        price_ticks = m.price === undefined ? undefined : priceToTicks(m.price as string, zone.unit);
        qty_wh = m.qty === undefined ? undefined : kwhToWh(m.qty as string);
      } catch (err) {
        if (err instanceof UnitError) return reject(s, op, m, fail(err.code, err.message), { order_id });
        throw err;
      }
      const f = d.funds.checkAmend(order_id, price_ticks, qty_wh);
      if (f !== null && known !== undefined) return reject(s, op, m, f, { order_id });
      cmd = { type: 'AMEND', order_id, user_id: p.user_id, ...(price_ticks === undefined ? {} : { price_ticks }), ...(qty_wh === undefined ? {} : { qty_wh }) };
    }
    const r = await submit(op, zone_id, cmd);
    if (!r.ok) return r.code === 'UNKNOWN_ZONE' ? unknownOrder(s, op, m) : reject(s, op, m, fail(r.code, r.message), { order_id });
    const rej = r.events.find((e) => e.type === 'REJECTED');
    if (rej !== undefined && rej.type === 'REJECTED') {
      return rej.reason === 'UNKNOWN_ORDER' ? unknownOrder(s, op, m) : reject(s, op, m, fail(rej.reason, `rejected by the engine: ${rej.reason}`), { order_id });
    }
    const o = d.orders?.get(order_id);
    countAck(op);
    const base: Record<string, unknown> = { type: 'ack', req_id: reqId(m), op, order_id };
    if (o !== undefined) Object.assign(base, wireOrder(o, zone.unit));
    const amended = r.events.find((e) => e.type === 'AMENDED');
    if (amended !== undefined && amended.type === 'AMENDED') base.priority_kept = amended.priority_kept;
    const cancelled = r.events.find((e) => e.type === 'CANCELLED' && e.order_id === order_id);
    if (cancelled !== undefined && cancelled.type === 'CANCELLED') Object.assign(base, { status: 'CANCELLED', reason: cancelled.reason });
    send(s, base as OutMessage);
  };

  const onMassCancel = async (s: Session, m: Msg, p: Principal): Promise<void> => {
    const zones = m.zone_id === undefined ? d.backend!.zones() : [m.zone_id as number];
    let cancelled = 0;
    for (const zone_id of zones) {
      const r = await submit('mass_cancel', zone_id, m.zone_id === undefined ? { type: 'MASS_CANCEL', scope: 'USER', user_id: p.user_id } : { type: 'MASS_CANCEL', scope: 'USER_ZONE', user_id: p.user_id, zone_id });
      if (!r.ok) {
        if (r.code === 'UNKNOWN_ZONE') continue;
        return reject(s, 'mass_cancel', m, fail(r.code, r.message));
      }
      for (const e of r.events) if (e.type === 'CANCELLED') cancelled++;
    }
    countAck('mass_cancel');
    send(s, { type: 'ack', req_id: reqId(m), op: 'mass_cancel', cancelled });
  };

  const onQuery = (s: Session, m: Msg): void => {
    const p = s.principal;
    if (p === null) return reject(s, m.type, m, fail('UNAUTHORIZED', 'log in first'));
    if (m.type === 'balances') {
      const balances = d.funds.balances(p.user_id).map((b) => ({
        currency: b.currency, available: formatMinor(b.available_minor, b.minor_units), held: formatMinor(b.held_minor, b.minor_units), escrow: formatMinor(b.escrow_minor, b.minor_units),
      }));
      return send(s, { type: 'balances', req_id: reqId(m), balances });
    }
    const o = d.orders?.get(m.order_id as number);
    if (o === undefined || o.user_id !== p.user_id) return unknownOrder(s, 'order_status', m);
    const unit = d.catalog.get(o.zone_id)!.unit;
    send(s, { type: 'order_state', req_id: reqId(m), ...wireOrder(o, unit) });
  };

  const handle = async (s: Session, m: Msg): Promise<void> => {
    switch (m.type) {
      case 'ping':
        return send(s, { type: 'pong', req_id: reqId(m), server_time: now() });
      case 'login':
        return onLogin(s, m);
      case 'subscribe':
      case 'unsubscribe':
        return onSubscribe(s, m);
      case 'resync': {
        const f = s.feeds.get(bookChannel(m.zone_id as number, m.interval_id as number));
        if (f === undefined) return reject(s, 'resync', m, fail('NOT_SUBSCRIBED', 'subscribe to the book first'));
        return s.snapshot(f, 'REQUESTED', reqId(m));
      }
      case 'order_status':
      case 'balances':
        return onQuery(s, m);
      case 'place_batch':
        return onPlaceBatch(s, m);
      default: {
        const p = requireTrader(s, m.type, m);
        if (p === null) return;
        if (m.type === 'place') return onPlace(s, m, p);
        if (m.type === 'cancel' || m.type === 'amend') return onCancelOrAmend(s, m, p);
        return onMassCancel(s, m, p);
      }
    }
  };

  const okCounter = (type: string): Inc => cached(okCounters, type, () => fastIncrement(metrics.messages, { type, outcome: 'ok' }));
  const durationOf = (type: string): Observe => cached(durations, type, () => fastObserver(metrics.message_seconds, { type }));
  const onMessage = (s: Session, data: ArrayBuffer, isBinary: boolean): void => {
    const t0 = performance.now();
    if (data.byteLength > limits.max_message_bytes) {
      metrics.messages.inc({ type: 'unknown', outcome: 'reject' });
      return closeWith(s, CLOSE.MESSAGE_TOO_BIG, `MESSAGE_TOO_BIG: at most ${limits.max_message_bytes} bytes`);
    }
    if (!s.bucket.take(now())) {
      metrics.messages.inc({ type: 'any', outcome: 'reject' });
      return reject(s, 'any', null, fail('RATE_LIMITED', `at most ${limits.conn_msgs_per_s} messages per second per connection`, limits.conn_msgs_per_s));
    }
    let m: unknown;
    try {
      m = isBinary ? msgpackDecode(new Uint8Array(data)) : JSON.parse(TEXT.decode(data));
    } catch {
      metrics.messages.inc({ type: 'unknown', outcome: 'reject' });
      return reject(s, 'unknown', null, fail('MALFORMED', isBinary ? 'the frame is not valid MessagePack' : 'the frame is not valid JSON'));
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof (m as Msg).type !== 'string') {
      metrics.messages.inc({ type: 'unknown', outcome: 'reject' });
      return reject(s, 'unknown', null, fail('MALFORMED', 'a message is an object with a string "type"'));
    }
    const msg = m as Msg;
    // own properties only: "toString", "valueOf", "__proto__"… are unknown types, not Object.prototype's methods
    const validate = Object.hasOwn(IN_VALIDATORS, msg.type) ? IN_VALIDATORS[msg.type] : undefined;
    if (validate === undefined) {
      metrics.messages.inc({ type: 'unknown', outcome: 'reject' });
      return reject(s, String(msg.type).slice(0, 32), msg, fail('UNKNOWN_TYPE', `unknown message type "${String(msg.type).slice(0, 32)}"`));
    }
    const problem = validate(msg);
    if (problem !== null) {
      metrics.messages.inc({ type: msg.type, outcome: 'reject' });
      return reject(s, msg.type, msg, fail('INVALID_FIELD', problem.message));
    }
    handle(s, msg).then(
      () => {
        if (msg.type !== 'login') okCounter(msg.type)();
        if (TRADING_TYPES.has(msg.type) || msg.type === 'ping') durationOf(msg.type)((performance.now() - t0) / 1e3);
      },
      (err: Error) => {
        metrics.messages.inc({ type: msg.type, outcome: 'error' });
        reject(s, msg.type, msg, fail('INTERNAL', err.message));
      },
    );
  };

  const onClose = (s: Session): void => {
    s.closed = true;
    s.ws = null;
    sessions.delete(s);
    metrics.connections.dec();
    for (const f of [...s.feeds.values()]) leaveFeed(s, f);
    const p = s.principal;
    if (p === null) return;
    leaveUser(s, p.user_id);
    const n = (keySessions.get(p.key_id) ?? 1) - 1;
    if (n <= 0) {
      keySessions.delete(p.key_id);
      keyBuckets.delete(p.key_id);
    } else keySessions.set(p.key_id, n);
    if (s.cancel_on_disconnect && d.backend !== null) {
      for (const zone_id of s.zones_traded) void submit('cancel_on_disconnect', zone_id, { type: 'MASS_CANCEL', scope: 'USER_ZONE', user_id: p.user_id, zone_id });
    }
  };

  d.app.ws<Holder>(d.path ?? '/ws', {
    // Frames up to 4× the limit reach us and are closed with 1009 and a reason; beyond that uWS
    // drops the connection itself (1006) without reading the frame.
    maxPayloadLength: limits.max_message_bytes * OVERSIZE_READ_FACTOR,
    // Sends are checked against our own limits first; this only guards against runaway buffers.
    maxBackpressure: limits.disconnect_buffered_bytes * 2,
    closeOnBackpressureLimit: 0,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
      const key = req.getHeader('sec-websocket-key');
      const protocols = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const query = new URLSearchParams(req.getQuery() ?? '');
      if (sessions.size >= limits.max_connections) {
        res.cork(() => {
          res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'application/json')
            .end(JSON.stringify({ code: 'TOO_MANY_CONNECTIONS', message: `at most ${limits.max_connections} connections`, limit: limits.max_connections }));
        });
        return;
      }
      const offered = protocols.split(',').map((p) => p.trim()).filter((p) => p !== '');
      const msgpack = offered.includes(MSGPACK_SUBPROTOCOL) || query.get('encoding') === 'msgpack';
      const chosen = msgpack && offered.includes(MSGPACK_SUBPROTOCOL) ? MSGPACK_SUBPROTOCOL : offered[0] ?? '';
      const ip = Buffer.from(res.getRemoteAddressAsText()).toString();
      const s = newSession(msgpack ? 'msgpack' : 'json', ip);
      res.upgrade<Holder>({ session: s }, key, chosen, extensions, context);
    },
    open: (ws: Ws) => {
      const s = ws.getUserData().session;
      s.ws = ws;
      sessions.add(s);
      metrics.connections.inc();
      send(s, {
        type: 'welcome', version: PROTOCOL_VERSION, encoding: s.encoding, heartbeat_ms: limits.heartbeat_idle_ms, max_message_bytes: limits.max_message_bytes,
        max_subscriptions: limits.max_subscriptions_per_connection, server_time: now(),
      });
    },
    message: (ws: Ws, data: ArrayBuffer, isBinary: boolean) => {
      const s = ws.getUserData().session;
      try {
        onMessage(s, data, isBinary);
      } catch (err) {
        // A bug must never escape into uWS (an uncaught exception ends the process): answer INTERNAL.
        metrics.messages.inc({ type: 'unknown', outcome: 'error' });
        reject(s, 'unknown', null, fail('INTERNAL', (err as Error).message));
      }
    },
    drain: (ws: Ws) => {
      const s = ws.getUserData().session;
      s.buffered = -1;
      if (s.conflating.size === 0 || ws.getBufferedAmount() > limits.conflate_buffered_bytes / 2) return;
      for (const f of [...s.conflating]) s.snapshot(f, 'CONFLATED');
    },
    close: (ws: Ws) => onClose(ws.getUserData().session),
  });

  const heartbeat = setInterval(() => {
    const t = now();
    const hb = { type: 'heartbeat', server_time: t } as const;
    let json: string | null = null;
    let mp: Uint8Array | null = null;
    for (const s of sessions) {
      if (t - s.last_send_ms < limits.heartbeat_idle_ms) continue;
      if (s.encoding === 'json') sendRaw(s, (json ??= encodeMessage(hb, 'json') as string));
      else sendRaw(s, (mp ??= encodeMessage(hb, 'msgpack') as Uint8Array));
    }
  }, Math.max(50, Math.floor(limits.heartbeat_idle_ms / 4)));
  heartbeat.unref();

  return {
    sessions: () => sessions.size,
    bufferedBytes() {
      let b = 0;
      for (const s of sessions) b += s.ws?.getBufferedAmount() ?? 0;
      return b;
    },
    close() {
      clearInterval(heartbeat);
      for (const s of [...sessions]) closeWith(s, CLOSE.SHUTTING_DOWN, 'SHUTTING_DOWN');
      for (const f of feeds.values()) f.close();
      feeds.clear();
    },
  };
}
