// Stable error codes. The gateway passes the engine's rejection codes (MARKET-RULES.md) and the
// runtime's and ledger's through unchanged and adds its own below.
export const GATEWAY_CODES = [
  'MALFORMED', // not JSON / not MessagePack / not an object
  'UNKNOWN_TYPE', // a message type the protocol does not have
  'INVALID_FIELD', // schema violation: missing field, wrong type, bad decimal
  'UNAUTHORIZED', // not logged in, bad signature, unknown/revoked key, stale timestamp, replayed nonce
  'FORBIDDEN', // logged in, but the role may not do this
  'RATE_LIMITED',
  'TOO_MANY_SUBSCRIPTIONS',
  'TOO_MANY_SESSIONS',
  'TOO_MANY_CONNECTIONS',
  'ALREADY_LOGGED_IN',
  'UNKNOWN_CHANNEL',
  'NOT_SUBSCRIBED',
  'INSUFFICIENT_FUNDS',
  'EXCHANGE_UNAVAILABLE',
  'NOT_FOUND',
  'CONFLICT',
  'INTERNAL',
] as const;
export type GatewayCode = (typeof GATEWAY_CODES)[number];

/** An error as a value: a stable code, a sentence for people, and optional details (e.g. the limit). */
export interface Failure {
  code: string;
  message: string;
  limit?: number;
}

export function fail(code: string, message: string, limit?: number): Failure {
  return limit === undefined ? { code, message } : { code, message, limit };
}
