// examples/bot/bot.mjs against a real gateway: it logs in, rebuilds the book, places its bid and
// ask in one place_batch, and its cancel-on-disconnect session takes both quotes down when it exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startExchange, TICK, type Exchange } from './harness.js';

let ex: Exchange;
let bot: ChildProcess | null = null;
beforeAll(async () => {
  ex = await startExchange();
  await ex.deposit(ex.actors.alice, '100.00');
});
afterAll(async () => {
  bot?.kill('SIGKILL');
  await ex?.stop();
});

it('the example bot quotes a bid and an ask (one place_batch) and they are cancelled when it disconnects', async () => {
  const watcher = await ex.login(ex.actors.alice);
  const creds = ex.actors.alice.creds;
  let out = '';
  bot = spawn(process.execPath, [fileURLToPath(new URL('../../examples/bot/bot.mjs', import.meta.url))], {
    env: {
      ...process.env, KWX_URL: ex.url, KWX_KEY_ID: creds.key_id, KWX_SECRET: creds.secret, KWX_ALGORITHM: creds.algorithm,
      KWX_ZONE: String(ex.zone_id), KWX_INTERVAL: String(ex.interval_id), KWX_TICK: TICK,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  bot.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  bot.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const quoted = (side: string) => watcher.next((m) => m.type === 'order' && m.status === 'ACTIVE' && String(m.client_order_id).startsWith(`bot-${side}-`), 15_000);
  const [bid, ask] = await Promise.all([quoted('BUY'), quoted('SELL')]).catch((err: Error) => {
    throw new Error(`${err.message}\nbot output:\n${out}`);
  });
  // an empty book quotes around 0.1000 with 20 ticks either side, POST_ONLY
  expect(bid).toMatchObject({ side: 'BUY', order_type: 'POST_ONLY', price: '0.0980', qty: '1.000' });
  expect(ask).toMatchObject({ side: 'SELL', order_type: 'POST_ONLY', price: '0.1020', source: 'SOLAR' });
  expect(out).toContain('logged in as user');
  expect(out).not.toContain('reject');
  // the two quotes came as one place_batch frame, not as two places
  const counted = (await ex.registry.getSingleMetric('kwx_ws_messages_total')!.get()).values;
  const n = (type: string) => counted.filter((v) => v.labels.type === type && v.labels.outcome === 'ok').reduce((a, v) => a + v.value, 0);
  expect(n('place_batch')).toBeGreaterThanOrEqual(1);
  expect(n('place')).toBe(0);
  bot.kill('SIGINT');
  for (const o of [bid, ask]) {
    const c = await watcher.next((m) => m.type === 'order' && m.order_id === o.order_id && m.status === 'CANCELLED');
    expect(c.reason).toBe('MASS_CANCEL');
  }
  watcher.close();
});
