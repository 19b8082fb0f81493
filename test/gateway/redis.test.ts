// Two gateway processes sharing one real Redis: this test process runs the engine, the publisher
// and gateway A; a child process (dist/gateway/edge.js, built by `npm test`) is gateway B. Both
// deliver the same sequenced book stream to their subscribers.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../schema/paths.js';
import { createRedisBus } from '../../gateway/bus.js';
import { redisUrl } from '../support/db.js';
import { ClientBook } from './book.js';
import { Client, type Json } from './client.js';
import { startExchange, type Exchange } from './harness.js';

let ex: Exchange | undefined;
let child: ChildProcess | undefined;
afterAll(async () => {
  child?.kill('SIGTERM');
  await ex?.stop();
});

function startEdge(env: Record<string, string>): { child: ChildProcess; port: Promise<number> } {
  const entry = join(PROJECT_ROOT, 'dist', 'gateway', 'edge.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` (npm test does it first)`);
  const c = spawn(process.execPath, [entry], { env: { ...process.env, ...env } as Record<string, string>, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const port = new Promise<number>((resolve, reject) => {
    c.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /"msg":"listening"[^\n]*"port":(\d+)/.exec(err);
      if (m !== null) resolve(Number(m[1]));
    });
    c.on('exit', (code) => reject(new Error(`edge exited ${code}: ${err}`)));
  });
  return { child: c, port };
}

describe('Redis bus', () => {
  it.skipIf(!redisUrl())('two gateway processes sharing one Redis deliver the same sequenced book stream (needs REDIS_URL)', async () => {
    const prefix = `kwx-test-${randomBytes(4).toString('hex')}:`;
    ex = await startExchange({ bus: createRedisBus(redisUrl(), { prefix }) });
    await ex.deposit(ex.actors.bob, '100000.00');
    const edge = startEdge({ DATABASE_URL: ex.db.url, REDIS_URL: redisUrl(), KWX_REDIS_PREFIX: prefix, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' });
    child = edge.child;
    const portB = await edge.port;

    const subs = [await ex.anon(), await Client.connect(`ws://127.0.0.1:${portB}/ws`)];
    const books = subs.map(() => new ClientBook());
    const streams: Json[][] = subs.map(() => []);
    subs.forEach((c, i) => {
      c.onMessage = (m) => {
        if (m.type !== 'book') return;
        books[i].apply(m);
        if (!m.snapshot) streams[i].push({ seq: m.seq, epoch: m.epoch, changes: m.changes, checksum: m.checksum });
      };
    });
    for (const c of subs) {
      await c.request({ type: 'subscribe', channel: 'book', zone_id: ex.zone_id, interval_id: ex.interval_id });
      await c.next((m) => m.type === 'book' && m.snapshot);
    }
    // a trader on the edge gateway is refused orders (the engine runs elsewhere) but may log in
    const onEdge = await Client.connect(`ws://127.0.0.1:${portB}/ws`);
    const { loginMessage } = await import('../../gateway/auth.js');
    expect(await onEdge.request(loginMessage(ex.actors.carol.creds))).toMatchObject({ type: 'logged_in' });
    expect(await onEdge.request({ type: 'cancel', order_id: 1 })).toMatchObject({ code: 'EXCHANGE_UNAVAILABLE' });

    const alice = await ex.login(ex.actors.alice);
    const bob = await ex.login(ex.actors.bob);
    for (let i = 0; i < 200; i++) {
      const sell = i % 2 === 0;
      const price = (sell ? 1000 + (i % 17) * 3 : 990 - (i % 13) * 3 + (i % 5 === 0 ? 40 : 0)) / 10000;
      await (sell ? alice : bob).request({
        type: 'place', zone_id: ex.zone_id, interval_id: ex.interval_id, client_order_id: `r${i}`, side: sell ? 'SELL' : 'BUY', source: sell ? 'WIND' : 'ANY',
        order_type: 'LIMIT', price: price.toFixed(4), qty: `${1 + (i % 7)}.250`,
      });
    }
    // The last delta's seq as the publisher sent it (the ack can overtake the delta's Redis hop to
    // gateway A's own subscriber, so books[0] is not yet a safe reference when the ack arrives).
    const finalSeq = ex.gw.publisher!.bookSeq(ex.zone_id, ex.interval_id);
    for (let i = 0; i < 500 && (books[0].seq < finalSeq || books[1].seq < finalSeq); i++) await new Promise((r) => setTimeout(r, 20));
    expect(books[0].seq).toBe(finalSeq);
    expect(finalSeq).toBeGreaterThan(100);
    expect(books[1].seq).toBe(finalSeq);
    expect(streams[1]).toEqual(streams[0]);
    expect(books.map((b) => [b.mismatches, b.gaps])).toEqual([[0, 0], [0, 0]]);
    expect(books[1].bids).toEqual(books[0].bids);
    expect(books[1].asks).toEqual(books[0].asks);
    for (const c of [...subs, onEdge, alice, bob]) c.close();
  });
});
