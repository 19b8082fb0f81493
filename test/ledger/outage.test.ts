// PostgreSQL cut off under a stream of ledger operations: flushes reject with EXCHANGE_UNAVAILABLE
// within the bound, nothing is lost, and the store resumes by itself when the database returns.
// The outage is a cut TCP proxy between the store and the shared server (the server keeps running).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startProxy, type CuttableProxy as Proxy } from '../support/proxy.js';
import postgres from 'postgres';
import { connect, type Sql } from '../../schema/db.js';
import { FLUSH_UNAVAILABLE_AFTER_MS, isConnectionError, LedgerStore, loadLedger, type FlushResult } from '../../ledger/store.js';
import { isLedgerError } from '../../ledger/errors.js';
import type { Ledger } from '../../ledger/ledger.js';
import { BUYER, codeOf, newLedger, SELLER, T0 } from './fixtures.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Each test gets its own database and proxy (a store still retrying cannot touch another test's rows).
let db: TestDatabase;
let proxy: Proxy;
let pools: Sql[] = [];
/** A pool through the proxy (`prepare: false` sends every statement's text, so the proxy can spot a COMMIT). */
function proxied(options: { prepare?: boolean } = {}): Sql {
  const sql = options.prepare === false ? (postgres(proxy.url, { max: 4, prepare: false, onnotice: () => {} }) as unknown as Sql) : connect(proxy.url, { max: 4 });
  pools.push(sql);
  return sql;
}

beforeEach(async () => {
  db = await createTestDatabase();
  proxy = await startProxy(db.url);
});
afterEach(async () => {
  await proxy?.restore();
  for (const p of pools) await p.end({ timeout: 5 });
  pools = [];
  await proxy?.close();
  await db?.drop();
});

/** What the database holds equals memory: each transfer once, seq 1..n without a gap, and a rebuild on a fresh pool equals the ledger. */
async function expectDurableCopyOf(ledger: Ledger): Promise<void> {
  const [t] = await db.sql<{ n: string; ids: string; lo: string | null; hi: string | null }[]>`
    select count(*)::text as n, count(distinct id)::text as ids, min(seq)::text as lo, max(seq)::text as hi from ledger_transfers`;
  const n = ledger.core.transfer_count;
  expect(t).toEqual({ n: String(n), ids: String(n), lo: n > 0 ? '1' : null, hi: n > 0 ? String(n) : null });
  const fresh = connect(db.url, { max: 2 });
  try {
    const rebuilt = await loadLedger(fresh);
    rebuilt.checkInvariants();
    expect(rebuilt.snapshot()).toEqual(ledger.snapshot());
  } finally {
    await fresh.end({ timeout: 5 });
  }
}

/** One step of the stream: a deposit; every third step also a buy hold, its fill and the settlement (a certificate). */
function step(ledger: Ledger, i: number, now: number): string[] {
  const ids = [`dep-${i}`];
  ledger.deposit({ transfer_id: `dep-${i}`, user_id: BUYER, currency: 'EUR', amount_minor: 1_000n }, now);
  if (i % 3 === 0) {
    ledger.holdBuyOrder({ order_id: i + 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, now);
    ledger.fillBuyOrder({ trade_id: i + 1, order_id: i + 1, seller_id: SELLER, price_ticks: 2000, qty_wh: 10_000, interval_id: 1, source: 'SOLAR' }, now);
    ledger.settleTrade({ trade_id: i + 1, delivered_wh: 10_000 }, now);
  }
  return ids;
}

describe('ledger store through a PostgreSQL outage', () => {
  it('classifies connection-class errors (retry) apart from everything else (fail-stop)', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', '57P01', '57P03', '08006', '08001']) {
      expect(isConnectionError(Object.assign(new Error('x'), { code })), code).toBe(true);
    }
    expect(isConnectionError(new Error('COPY failed', { cause: Object.assign(new Error('gone'), { code: 'ECONNRESET' }) }))).toBe(true);
    for (const code of ['23505', '23503', '22P02', '42P01', '3D000', undefined]) {
      expect(isConnectionError(Object.assign(new Error('duplicate key value violates unique constraint'), { code })), String(code)).toBe(false);
    }
  });

  it('cut under a stream of operations: flushes reject with EXCHANGE_UNAVAILABLE within the bound, nothing is lost, and it resumes by itself', async () => {
    const ledger = newLedger({ record_changes: true });
    const store = new LedgerStore(proxied(), ledger, { retry_backoff_max_ms: 200 });
    await store.flush();

    let phase = 'before' as 'before' | 'outage' | 'after';
    const acked = new Set<string>();
    const outcomes: { phase: typeof phase; ok: boolean; code: string | null; ms: number }[] = [];
    const flushes: Promise<void>[] = [];
    let running = true;
    let i = 0;
    // Group commit like the gateway's: at most 3 flushes outstanding; steps in between join the next batch.
    let outstanding = 0;
    let ids: string[] = [];
    const load = (async () => {
      while (running) {
        for (let k = 0; k < 5; k++, i++) ids.push(...step(ledger, i, T0 + i));
        if (outstanding < 3) {
          const mine = ids;
          ids = [];
          const at = phase;
          const t0 = performance.now();
          outstanding++;
          flushes.push(
            store.flush().then(
              (r: FlushResult) => {
                expect(r.durable_seq).toBeGreaterThanOrEqual(ledger.transfer(mine[mine.length - 1])!.seq);
                for (const id of mine) acked.add(id);
                outcomes.push({ phase: at, ok: true, code: null, ms: performance.now() - t0 });
              },
              (err: unknown) => {
                outcomes.push({ phase: at, ok: false, code: isLedgerError(err) ? err.code : String(err), ms: performance.now() - t0 });
              },
            ).finally(() => outstanding--),
          );
        }
        await sleep(3);
      }
    })();

    for (let k = 0; k < 500 && acked.size < 50; k++) await sleep(10);
    const ackedBeforeCut = new Set(acked);
    phase = 'outage';
    await proxy.cut();
    for (let k = 0; k < 200 && store.available; k++) await sleep(10);
    expect(store.available).toBe(false);
    expect(store.status()).toMatchObject({ available: false, state: 'unavailable' });
    await sleep(700);
    expect(store.status().backlog_rows).toBeGreaterThan(0);
    phase = 'after';
    await proxy.restore();
    for (let k = 0; k < 500 && !outcomes.some((o) => o.phase === 'after' && o.ok); k++) await sleep(10);
    await sleep(300);
    running = false;
    await load;
    await Promise.all(flushes);
    const last = await store.flush(); // resolves: no restart needed
    expect(last.durable_seq).toBe(ledger.core.transfer_count);

    const during = outcomes.filter((o) => o.phase === 'outage');
    expect(ackedBeforeCut.size).toBeGreaterThanOrEqual(50);
    expect(during.length).toBeGreaterThan(5);
    // Every flush issued during the outage was refused, promptly, and only with EXCHANGE_UNAVAILABLE.
    expect(during.every((o) => !o.ok && o.code === 'EXCHANGE_UNAVAILABLE')).toBe(true);
    expect(Math.max(...during.map((o) => o.ms))).toBeLessThan(FLUSH_UNAVAILABLE_AFTER_MS);
    expect(new Set(outcomes.filter((o) => !o.ok).map((o) => o.code))).toEqual(new Set(['EXCHANGE_UNAVAILABLE']));
    expect(outcomes.some((o) => o.phase === 'after' && o.ok)).toBe(true);
    expect(store.status()).toMatchObject({ available: true, state: 'ok', error: null, backlog_batches: 0, backlog_rows: 0 });
    expect(store.status().retries).toBeGreaterThan(0);

    // Nothing acknowledged before the cut (or at all) is lost; everything in memory is stored exactly once.
    const stored = new Set((await db.sql<{ id: string }[]>`select id from ledger_transfers`).map((r) => r.id));
    expect([...ackedBeforeCut].filter((id) => !stored.has(id))).toEqual([]);
    expect([...acked].filter((id) => !stored.has(id))).toEqual([]);
    expect(stored.size).toBe(ledger.core.transfer_count);
    expect(ledger.certificates.verifyChain().ok).toBe(true);
    await expectDurableCopyOf(ledger);
  });

  it('a COMMIT whose reply is lost is detected on retry: the batch is not written twice', async () => {
    const ledger = newLedger({ record_changes: true });
    const store = new LedgerStore(proxied({ prepare: false }), ledger, { retry_backoff_max_ms: 100 });
    await store.flush();
    for (let i = 0; i < 30; i++) step(ledger, i, T0 + i);
    proxy.loseNextCommitReply();
    const first = store.flush().then(() => 'ok', (err: unknown) => (isLedgerError(err) ? err.code : String(err)));
    expect(await first).toBe('EXCHANGE_UNAVAILABLE');
    await store.drained();
    expect(store.error).toBeNull();
    expect(store.status()).toMatchObject({ available: true, state: 'ok' });
    expect(store.status().retries).toBeGreaterThan(0);
    step(ledger, 30, T0 + 30);
    expect((await store.flush()).durable_seq).toBe(ledger.core.transfer_count);
    await expectDurableCopyOf(ledger);
  });

  it('the backlog is bounded: past it new commitments are refused with EXCHANGE_UNAVAILABLE; it drains when the database returns', async () => {
    const ledger = newLedger({ record_changes: true });
    const store = new LedgerStore(proxied(), ledger, { max_backlog_rows: 40, retry_backoff_max_ms: 100 });
    await store.flush();
    await proxy.cut();
    ledger.deposit({ transfer_id: 'out-0', user_id: BUYER, currency: 'EUR', amount_minor: 10_000n }, T0);
    await expect(store.flush()).rejects.toMatchObject({ code: 'EXCHANGE_UNAVAILABLE' });
    expect(store.available).toBe(false);
    let accepted = 1;
    for (let i = 1; i < 100; i++) {
      try {
        ledger.deposit({ transfer_id: `out-${i}`, user_id: BUYER, currency: 'EUR', amount_minor: 1n }, T0 + i);
        accepted++;
      } catch (err) {
        expect(isLedgerError(err, 'EXCHANGE_UNAVAILABLE')).toBe(true);
        break;
      }
    }
    expect(accepted).toBeLessThan(40);
    expect(store.status().backlog_rows).toBeGreaterThanOrEqual(40);
    expect(codeOf(() => ledger.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0))).toBe('EXCHANGE_UNAVAILABLE');
    // A refused operation changed nothing.
    expect(ledger.transfer(`out-${accepted}`)).toBeUndefined();
    expect(ledger.holds.size).toBe(0);
    ledger.checkInvariants();

    await proxy.restore();
    for (let k = 0; k < 300 && !store.available; k++) await sleep(10);
    expect(store.available).toBe(true);
    ledger.deposit({ transfer_id: 'back', user_id: BUYER, currency: 'EUR', amount_minor: 5n }, T0 + 1_000);
    expect((await store.flush()).durable_seq).toBe(ledger.core.transfer_count);
    await expectDurableCopyOf(ledger);
  });

  it('a constraint-class failure still stops the writer for good (no retry)', async () => {
    const ledger = newLedger({ record_changes: true });
    const store = new LedgerStore(proxied(), ledger, { retry_backoff_max_ms: 100 });
    ledger.deposit({ transfer_id: 'fine', user_id: BUYER, currency: 'EUR', amount_minor: 100n }, T0);
    await store.flush();
    await db.sql`insert into ledger_transfers (id, seq, debit_account_id, credit_account_id, amount, code, created_at)
      values ('taken', 999, 1, 2, 1, 'TRANSFER', now())`;
    ledger.deposit({ transfer_id: 'taken', user_id: BUYER, currency: 'EUR', amount_minor: 5n }, T0 + 1);
    const err = (await store.flush().then(() => new Error('the flush succeeded'), (e: unknown) => e)) as Error;
    expect(err.message).toMatch(/duplicate key/);
    expect(isConnectionError(err)).toBe(false);
    expect(store.status()).toMatchObject({ available: false, state: 'stopped', retries: 0 });
    expect(store.error).not.toBeNull();
    ledger.deposit({ transfer_id: 'later', user_id: BUYER, currency: 'EUR', amount_minor: 7n }, T0 + 2);
    await expect(store.flush()).rejects.toThrow(/an earlier batch failed/);
    await expect(store.flush()).rejects.toThrow(/stopped after a failed batch/);
    await sleep(300);
    expect(store.status().retries).toBe(0);
    const [{ n }] = await db.sql<{ n: string }[]>`select count(*)::text as n from ledger_transfers where id in ('fine', 'later')`;
    expect(n).toBe('1');
  });
});
