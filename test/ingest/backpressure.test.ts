import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createMeter, post, reading, slot, startHarness, type Harness } from './helpers.js';

// Small limits so that the edges are reachable: 10 queued readings, 10 per batch, 4,000-byte bodies.
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ limits: { max_queued_items: 10, max_batch_items: 10, max_body_bytes: 4000 } });
});
afterAll(async () => {
  await h.close();
});

const batchOf = (serial: string, n: number, from = 20) => Array.from({ length: n }, (_, i) => reading(serial, slot(from - i), i, i));

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

describe('backpressure: bounded queue, no loss', () => {
  it('when the queue is full HTTP answers 503 + Retry-After and the WebSocket says slow_down; resends later store everything', async () => {
    const a = await createMeter(h.db, { serial: 'BP-A', user_id: h.user_id, zone_id: h.zone_id });
    const b = await createMeter(h.db, { serial: 'BP-B', user_id: h.user_id, zone_id: h.zone_id });
    const c = await createMeter(h.db, { serial: 'BP-C', user_id: h.user_id, zone_id: h.zone_id });
    const ws = new WebSocket(`${h.ws_base}/stream`, { headers: { authorization: `Bearer ${c.token}` } });
    await new Promise((r) => ws.once('open', r));
    const messages: Record<string, unknown>[] = [];
    ws.on('message', (d: Buffer) => messages.push(JSON.parse(d.toString())));

    // hold the writer: a SHARE lock on meter_readings blocks every insert until we commit
    const blocker = await h.db.sql.reserve();
    await blocker`begin`;
    await blocker`lock table meter_readings in share mode`;
    try {
      // exactly the queue's limit: admitted (and stuck behind the lock)
      const pendingA = post(`${h.base}/readings`, a.token, JSON.stringify(batchOf('BP-A', 10)));
      await until(() => h.service.stats().queued_items === 10);

      const refused = await post(`${h.base}/readings`, b.token, JSON.stringify(batchOf('BP-B', 1)));
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body.error.code).toBe('QUEUE_FULL');

      ws.send(JSON.stringify({ id: 'c-1', readings: batchOf('BP-C', 1) }));
      await until(() => messages.length === 1);
      expect(messages[0]).toMatchObject({ type: 'slow_down', seq: 1, id: 'c-1', code: 'QUEUE_FULL', retry_after_ms: 1000 });

      // nothing of the refused batches reached the database, and A is not acknowledged yet
      const settled = await Promise.race([pendingA.then(() => 'answered'), new Promise((r) => setTimeout(() => r('waiting'), 200))]);
      expect(settled).toBe('waiting');
      await blocker`commit`;
      const answeredA = await pendingA;
      expect(answeredA.status).toBe(200);
      expect(answeredA.body.accepted).toBe(10);
    } finally {
      await blocker`rollback`.catch(() => {});
      blocker.release();
    }

    // the meters resend what was refused
    expect((await post(`${h.base}/readings`, b.token, JSON.stringify(batchOf('BP-B', 1)))).body.accepted).toBe(1);
    ws.send(JSON.stringify({ id: 'c-1', readings: batchOf('BP-C', 1) }));
    await until(() => messages.length === 2);
    expect(messages[1]).toMatchObject({ type: 'ack', id: 'c-1', accepted: 1 });
    ws.close();

    const counts = await h.db.sql`
      select m.serial, count(r.*)::int as n from smart_meters m left join meter_readings r on r.meter_id = m.id
      where m.serial like 'BP-%' group by 1 order by 1`;
    expect(counts.map((x) => [x.serial, x.n])).toEqual([['BP-A', 10], ['BP-B', 1], ['BP-C', 1]]);
    expect(h.service.stats()).toMatchObject({ queued_items: 0, queued_batches: 0 });
  });

  it('a write that fails (connection killed mid-statement) is not acknowledged: 503 STORAGE_UNAVAILABLE, and the resend stores it', async () => {
    const m = await createMeter(h.db, { serial: 'KILL-1', user_id: h.user_id, zone_id: h.zone_id });
    const blocker = await h.db.sql.reserve();
    await blocker`begin`;
    await blocker`lock table meter_readings in share mode`;
    let answer;
    try {
      const pending = post(`${h.base}/readings`, m.token, JSON.stringify(batchOf('KILL-1', 3)));
      // wait until the writer's statement is blocked on our lock, then kill its connection
      for (;;) {
        const [{ n }] = await blocker`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`;
        if (n > 0) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      await blocker`
        select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`;
      answer = await pending;
    } finally {
      await blocker`rollback`.catch(() => {});
      blocker.release();
    }
    expect(answer.status).toBe(503);
    expect(answer.body.error.code).toBe('STORAGE_UNAVAILABLE');
    expect(answer.headers.get('retry-after')).toBe('1');
    const [{ n: none }] = await h.db.sql`select count(*)::int as n from meter_readings where meter_id = ${m.id}`;
    expect(none).toBe(0);
    const again = await post(`${h.base}/readings`, m.token, JSON.stringify(batchOf('KILL-1', 3)));
    expect(again.body).toMatchObject({ accepted: 3, duplicates: 0 });
  });

  it('a batch at the item limit is accepted, one more item is 413 BATCH_TOO_LARGE', async () => {
    const m = await createMeter(h.db, { serial: 'LIM-1', user_id: h.user_id, zone_id: h.zone_id });
    const ok = await post(`${h.base}/readings`, m.token, JSON.stringify(batchOf('LIM-1', 10)));
    expect(ok.body.accepted).toBe(10);
    const big = await post(`${h.base}/readings`, m.token, JSON.stringify(batchOf('LIM-1', 11, 40)));
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('BATCH_TOO_LARGE');
  });

  it('a body of exactly the byte limit is read, one byte more is 413 BODY_TOO_LARGE', async () => {
    const m = await createMeter(h.db, { serial: 'LIM-2', user_id: h.user_id, zone_id: h.zone_id });
    const json = JSON.stringify(batchOf('LIM-2', 2));
    const exact = json.padEnd(4000, ' ');
    const r = await post(`${h.base}/readings`, m.token, exact);
    expect(r.status).toBe(200);
    expect(r.body.accepted).toBe(2);
    const over = await post(`${h.base}/readings`, m.token, exact + ' ');
    expect(over.status).toBe(413);
    expect(over.body.error.code).toBe('BODY_TOO_LARGE');
  });
});
