// Every limit the gateway enforces, named once. Each is tested at its edge (test/gateway/limits.test.ts).
// attachGateway({ limits }) may override any of them (tests use small values; operators may tune).

export interface GatewayLimits {
  /** Largest WebSocket frame accepted; a bigger one closes the connection with 1009 MESSAGE_TOO_BIG. */
  max_message_bytes: number;
  /** Market-data subscriptions per connection. */
  max_subscriptions_per_connection: number;
  /** Open WebSocket connections per process; the next upgrade gets HTTP 503 TOO_MANY_CONNECTIONS. */
  max_connections: number;
  /** Logged-in sessions per API key at once; the next login is rejected TOO_MANY_SESSIONS. */
  max_sessions_per_key: number;
  /** Messages of any kind per connection: token bucket (burst, refill per second). */
  conn_msgs_burst: number;
  conn_msgs_per_s: number;
  /** Trading messages (place, cancel, amend, mass cancel) per API key across its sessions. */
  key_orders_burst: number;
  key_orders_per_s: number;
  /** Buffered bytes above which a connection gets conflated book updates instead of every delta. */
  conflate_buffered_bytes: number;
  /** Buffered bytes above which a connection is closed (4008 SLOW_CONSUMER). */
  disconnect_buffered_bytes: number;
  /** A connection that has sent nothing for this long gets a heartbeat. */
  heartbeat_idle_ms: number;
  /** Logins must arrive within this many ms of the signed timestamp (either side). */
  auth_max_skew_ms: number;
  /** Anonymous or not-yet-logged-in connections may send at most this many login attempts. */
  max_login_attempts: number;
  /** Admin request bodies. */
  max_admin_body_bytes: number;
  /** Page size bounds for admin queries. */
  max_page_size: number;
}

export const DEFAULT_LIMITS: Readonly<GatewayLimits> = Object.freeze({
  max_message_bytes: 16 * 1024,
  max_subscriptions_per_connection: 64,
  max_connections: 20_000,
  max_sessions_per_key: 16,
  conn_msgs_burst: 5_000,
  conn_msgs_per_s: 5_000,
  key_orders_burst: 2_000,
  key_orders_per_s: 2_000,
  conflate_buffered_bytes: 256 * 1024,
  disconnect_buffered_bytes: 4 * 1024 * 1024,
  heartbeat_idle_ms: 5_000,
  auth_max_skew_ms: 30_000,
  max_login_attempts: 5,
  max_admin_body_bytes: 64 * 1024,
  max_page_size: 500,
});

/** Orders in one place_batch frame (each is its own engine command and counts against the key's rate limit). */
export const MAX_BATCH_ORDERS = 20;
/** Top levels per side covered by the book checksum (Kraken uses 10). */
export const CHECKSUM_DEPTH = 10;
/** Finished orders remembered per process for order_status and force-cancel lookups. */
export const MAX_REMEMBERED_FINISHED_ORDERS = 50_000;
/** Frames up to this × max_message_bytes are read and closed with 1009 and a reason; larger ones uWS drops (1006). */
export const OVERSIZE_READ_FACTOR = 4;
/** Nonces are remembered for twice the skew window (replays inside it are refused). */
export const NONCE_TTL_FACTOR = 2;

/** WebSocket close codes the gateway uses (4000–4999 are application codes). */
export const CLOSE = Object.freeze({
  MESSAGE_TOO_BIG: 1009,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4029,
  TOO_MANY_LOGIN_ATTEMPTS: 4030,
  SHUTTING_DOWN: 1001,
});

/** A token bucket: `take()` is false when empty. Time is injected (integer ms). */
export class TokenBucket {
  private tokens: number;
  private last_ms: number;
  constructor(
    readonly burst: number,
    readonly per_s: number,
    now_ms: number,
  ) {
    this.tokens = burst;
    this.last_ms = now_ms;
  }
  take(now_ms: number, n = 1): boolean {
    if (now_ms > this.last_ms) {
      this.tokens = Math.min(this.burst, this.tokens + ((now_ms - this.last_ms) * this.per_s) / 1000);
      this.last_ms = now_ms;
    }
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}
