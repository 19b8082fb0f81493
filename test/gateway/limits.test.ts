// Hostile and sloppy clients: malformed frames, unknown types, wrong field types, oversized
// frames, bad signatures, stale timestamps, replays, and every limit at its edge. The clock is
// frozen so token buckets do not refill during a test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '@msgpack/msgpack';
import { loginMessage, loginPayload, signPayload } from '../../gateway/auth.js';
import { startExchange, type Exchange } from './harness.js';
import { Client } from './client.js';

const LIMITS = {
  max_message_bytes: 1024,
  max_subscriptions_per_connection: 2,
  conn_msgs_burst: 20,
  conn_msgs_per_s: 10,
  key_orders_burst: 5,
  key_orders_per_s: 3,
  max_sessions_per_key: 2,
  max_connections: 6,
  max_login_attempts: 3,
};
const frozen = Date.now();
let ex: Exchange;
beforeAll(async () => {
  ex = await startExchange({ limits: LIMITS, now: () => frozen });
});
afterAll(async () => ex?.stop());

describe('bad input gets a clear error and the connection stays usable', () => {
  it('malformed JSON, a non-object, an unknown type and wrong field types are each rejected with their code', async () => {
    const c = await ex.anon();
    c.send('{"type": "ping"');
    expect(await c.next((m) => m.type === 'reject' && m.code === 'MALFORMED')).toMatchObject({ op: 'unknown', message: 'the frame is not valid JSON' });
    c.send('[1,2,3]');
    expect(await c.next((m) => m.type === 'reject' && m.message.includes('object'))).toMatchObject({ code: 'MALFORMED' });
    expect(await c.request({ type: 'teleport' })).toMatchObject({ type: 'reject', code: 'UNKNOWN_TYPE', message: 'unknown message type "teleport"' });
    const wrong = await c.request({ type: 'place', zone_id: ex.zone_id, interval_id: ex.interval_id, client_order_id: 'x', side: 'BUY', order_type: 'LIMIT', price: '0.1', qty: 5 });
    expect(wrong).toMatchObject({ type: 'reject', op: 'place', code: 'INVALID_FIELD', message: '"qty" must be string, got integer' });
    expect(await c.request({ type: 'subscribe', channel: 'book', zone_id: 'one' })).toMatchObject({ code: 'INVALID_FIELD', message: '"zone_id" must be integer, got string' });
    expect(await c.request({ type: 'ping', extra: 1 })).toMatchObject({ code: 'INVALID_FIELD', message: 'unknown field "extra"' });
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    c.close();
  });

  it('a binary frame that is not MessagePack is MALFORMED; a MessagePack request is answered', async () => {
    const c = await ex.anon();
    c.send(Buffer.from([0xc1, 0xff, 0x00]));
    expect(await c.next((m) => m.type === 'reject')).toMatchObject({ code: 'MALFORMED', message: 'the frame is not valid MessagePack' });
    c.send(Buffer.from(encode({ type: 'ping', req_id: 'mp' })));
    expect(await c.next((m) => m.req_id === 'mp')).toMatchObject({ type: 'pong' });
    c.close();
  });

  it(`a frame of exactly max_message_bytes (${LIMITS.max_message_bytes}) is handled; one byte more closes the connection with 1009`, async () => {
    const c = await ex.anon();
    const base = JSON.stringify({ type: 'ping', req_id: '' });
    const exact = JSON.stringify({ type: 'ping', req_id: 'x'.repeat(LIMITS.max_message_bytes - base.length) });
    expect(Buffer.byteLength(exact)).toBe(LIMITS.max_message_bytes);
    c.send(exact);
    // req_id longer than 64 characters: handled, and answered with a field error
    expect(await c.next((m) => m.type === 'reject')).toMatchObject({ code: 'INVALID_FIELD' });
    c.send(exact + ' ');
    expect(await c.waitClose()).toEqual({ code: 1009, reason: `MESSAGE_TOO_BIG: at most ${LIMITS.max_message_bytes} bytes` });
  });
});

describe('signatures', () => {
  it('a bad signature, a stale timestamp and a replayed nonce are UNAUTHORIZED; the connection can still log in', async () => {
    const c = await ex.anon();
    const creds = ex.actors.alice.creds;
    const good = loginMessage(creds, frozen);
    expect(await c.request({ ...good, sig: signPayload(creds, loginPayload(creds.key_id, frozen, 'another-nonce-0000')) })).toMatchObject({ code: 'UNAUTHORIZED', message: 'bad signature, or unknown or revoked key' });
    const stale = loginMessage(creds, frozen - 31_000);
    expect(await c.request(stale)).toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringContaining('timestamp') });
    const first = await ex.anon();
    expect(await first.request(good)).toMatchObject({ type: 'logged_in' });
    const replay = await c.request(good);
    expect(replay).toMatchObject({ type: 'reject', code: 'UNAUTHORIZED', message: 'nonce already used (replay)' });
    first.close();
    c.close();
  });

  it(`after ${LIMITS.max_login_attempts} failed logins the connection is closed with 4030`, async () => {
    const c = await ex.anon();
    const bad = { ...loginMessage(ex.actors.carol.creds, frozen), sig: 'AAAA' };
    for (let i = 0; i < LIMITS.max_login_attempts; i++) expect(await c.request({ ...bad, nonce: `nonce-attempt-${i}-xxxx` })).toMatchObject({ code: 'UNAUTHORIZED' });
    c.send({ ...bad, nonce: 'nonce-attempt-final-x' });
    expect(await c.waitClose()).toMatchObject({ code: 4030, reason: 'TOO_MANY_LOGIN_ATTEMPTS' });
  });
});

describe('limits at their edge', () => {
  it(`per connection: ${LIMITS.conn_msgs_burst} messages pass, the next is RATE_LIMITED with the limit`, async () => {
    const c = await ex.anon();
    for (let i = 0; i < LIMITS.conn_msgs_burst; i++) c.send({ type: 'ping', req_id: i });
    c.send({ type: 'ping', req_id: 'over' });
    const over = await c.next((m) => m.type === 'reject');
    expect(over).toMatchObject({ code: 'RATE_LIMITED', limit: LIMITS.conn_msgs_per_s });
    expect(c.inbox.filter((m) => m.type === 'pong')).toHaveLength(LIMITS.conn_msgs_burst);
    c.close();
  });

  it(`per key: ${LIMITS.key_orders_burst} trading messages pass, the next is RATE_LIMITED with the limit, across the key's sessions`, async () => {
    const a = await ex.login(ex.actors.bob);
    const b = await ex.login(ex.actors.bob);
    const replies = [];
    for (let i = 0; i < LIMITS.key_orders_burst + 1; i++) {
      const c = i % 2 === 0 ? a : b;
      replies.push(await c.request({ type: 'cancel', order_id: 1 + i }));
    }
    expect(replies.slice(0, LIMITS.key_orders_burst).map((r) => r.code)).toEqual(Array(LIMITS.key_orders_burst).fill('UNKNOWN_ORDER'));
    expect(replies[LIMITS.key_orders_burst]).toMatchObject({ code: 'RATE_LIMITED', limit: LIMITS.key_orders_per_s });
    a.close();
    b.close();
  });

  it(`subscriptions: ${LIMITS.max_subscriptions_per_connection} per connection, the next is TOO_MANY_SUBSCRIPTIONS`, async () => {
    const c = await ex.anon();
    expect(await c.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval_id })).toMatchObject({ type: 'subscribed' });
    expect(await c.request({ type: 'subscribe', channel: 'trades', zone_id: ex.zone_id, interval_id: ex.interval_id })).toMatchObject({ type: 'subscribed' });
    expect(await c.request({ type: 'subscribe', channel: 'ticker', zone_id: ex.zone_id, interval_id: ex.interval_id })).toMatchObject({ code: 'TOO_MANY_SUBSCRIPTIONS', limit: 2 });
    expect(await c.request({ type: 'unsubscribe', channel: 'trades', zone_id: ex.zone_id, interval_id: ex.interval_id })).toMatchObject({ type: 'unsubscribed' });
    expect(await c.request({ type: 'subscribe', channel: 'ticker', zone_id: ex.zone_id, interval_id: ex.interval_id })).toMatchObject({ type: 'subscribed' });
    expect(await c.request({ type: 'subscribe', channel: 'book', zone_id: 999999, interval_id: 1 })).toMatchObject({ code: 'TOO_MANY_SUBSCRIPTIONS' });
    c.close();
  });

  it(`sessions per key: ${LIMITS.max_sessions_per_key} at once, the next login is TOO_MANY_SESSIONS`, async () => {
    const a = await ex.login(ex.actors.carol);
    const b = await ex.login(ex.actors.carol);
    const c = await ex.anon();
    expect(await c.request(loginMessage(ex.actors.carol.creds, frozen))).toMatchObject({ code: 'TOO_MANY_SESSIONS', limit: LIMITS.max_sessions_per_key });
    a.close();
    b.close();
    c.close();
  });

  it(`connections: ${LIMITS.max_connections} at once, the next upgrade is refused with HTTP 503`, async () => {
    for (let i = 0; i < 100 && ex.gw.ws.sessions() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ex.gw.ws.sessions()).toBe(0);
    const open: Client[] = [];
    for (let i = 0; i < LIMITS.max_connections; i++) open.push(await ex.anon());
    await expect(ex.anon()).rejects.toMatchObject({ status: 503 });
    open.pop()!.close();
    for (let i = 0; i < 100 && ex.gw.ws.sessions() >= LIMITS.max_connections; i++) await new Promise((r) => setTimeout(r, 20));
    const again = await ex.anon();
    expect(await again.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    for (const c of [...open, again]) c.close();
  });
});
