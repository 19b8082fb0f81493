// Message types that are names of Object.prototype members are unknown types like any other: a
// clear UNKNOWN_TYPE reject, the connection stays usable, nothing escapes as an exception (an
// uncaught exception in a uWS handler would end the whole process).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExchange, type Exchange } from './harness.js';

let ex: Exchange;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown): void => {
  uncaught.push(err);
};
beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  ex = await startExchange();
});
afterAll(async () => {
  await ex?.stop();
  process.off('uncaughtException', onUncaught);
});

describe('message types that are Object.prototype names', () => {
  it('toString, valueOf, hasOwnProperty, constructor, __proto__, isPrototypeOf: UNKNOWN_TYPE, and the session keeps working', async () => {
    for (const c of [await ex.anon(), await ex.login(ex.actors.alice)]) {
      for (const type of ['toString', 'valueOf', 'hasOwnProperty', 'constructor', '__proto__', 'isPrototypeOf', 'propertyIsEnumerable', '__defineGetter__']) {
        const r = await c.request({ type });
        expect(r).toMatchObject({ type: 'reject', code: 'UNKNOWN_TYPE', message: `unknown message type "${type}"` });
      }
      expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
      c.close();
    }
    expect(uncaught).toEqual([]);
  });
});
