import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { LedgerStore, loadLedger, MAX_TIMED_FLUSHES_IN_FLIGHT } from '../../ledger/store.js';
import { connect } from '../../schema/db.js';
import { isLedgerError } from '../../ledger/errors.js';
import { BUYER, newLedger, SELLER, T0 } from './fixtures.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe('ledger store', () => {
  it('commits batches in order and refuses every batch after a failed one (the memory is ahead: rebuild)', async () => {
    const ledger = newLedger({ record_changes: true });
    const store = new LedgerStore(db.sql, ledger);
    ledger.deposit({ transfer_id: 'ok-1', user_id: BUYER, currency: 'EUR', amount_minor: 100n }, T0);
    expect(await store.flush()).toMatchObject({ transfers: 1, durable_seq: 1 });
    // Someone else wrote a row with the id the next transfer uses: that batch cannot commit.
    await db.sql`insert into ledger_transfers (id, seq, debit_account_id, credit_account_id, amount, code, created_at)
      values ('clash', 999, 1, 2, 1, 'TRANSFER', now())`;
    ledger.deposit({ transfer_id: 'clash', user_id: BUYER, currency: 'EUR', amount_minor: 5n }, T0 + 1);
    const failed = store.flush();
    ledger.deposit({ transfer_id: 'ok-2', user_id: BUYER, currency: 'EUR', amount_minor: 7n }, T0 + 2);
    const after = store.flush();
    await expect(failed).rejects.toThrow(/duplicate key/);
    await expect(after).rejects.toThrow(/failed/);
    await expect(store.flush()).rejects.toThrow(/stopped after a failed batch/);
    expect(store.durable_seq).toBe(1);
    const [{ n }] = await db.sql<{ n: string }[]>`select count(*)::text as n from ledger_transfers where id in ('ok-1', 'ok-2')`;
    expect(n).toBe('1');
    await db.sql`delete from ledger_transfers where id = 'clash'`;
    // What was committed rebuilds: the first deposit only.
    const rebuilt = await loadLedger(db.sql);
    expect(rebuilt.balances(BUYER, 'EUR').available_minor).toBe(100n);
  });

  it('group commit: start() flushes on a timer until stop(), with a bounded number of batches in flight', async () => {
    const fresh = await createTestDatabase();
    try {
      const ledger = newLedger({ record_changes: true });
      const store = new LedgerStore(fresh.sql, ledger);
      store.start(1);
      let most_in_flight = 0;
      for (let i = 0; i < 50; i++) {
        ledger.deposit({ transfer_id: `t-${i}`, user_id: BUYER, currency: 'EUR', amount_minor: 1n }, T0 + i);
        await new Promise((r) => setTimeout(r, 1));
        most_in_flight = Math.max(most_in_flight, store.in_flight);
      }
      for (let tries = 0; tries < 400 && store.durable_seq < 50; tries++) await new Promise((r) => setTimeout(r, 10));
      store.stop();
      expect(store.durable_seq).toBe(50);
      expect(most_in_flight).toBeLessThanOrEqual(MAX_TIMED_FLUSHES_IN_FLIGHT);
      expect((await loadLedger(fresh.sql)).snapshot()).toEqual(ledger.snapshot());
    } finally {
      await fresh.drop();
    }
  });

  it('pipelines batch n+1 behind batch n: n+1 streams while n is open, never commits without n, and both commit in order after n is retried', async () => {
    const fresh = await createTestDatabase();
    const pool = connect(fresh.url, { max: 4 });
    const locker = await fresh.sql.reserve();
    try {
      const ledger = newLedger({ record_changes: true });
      const store = new LedgerStore(pool, ledger, { retry_backoff_min_ms: 20, retry_backoff_max_ms: 50 });
      ledger.deposit({ transfer_id: 'base', user_id: BUYER, currency: 'EUR', amount_minor: 1_000n }, T0);
      await store.flush();
      // Another session holds the buyer's account row: batch A (which updates it) waits inside its transaction.
      await locker`begin`;
      await locker`select id from ledger_accounts where id = ${ledger.accountId(BUYER, 'EUR', 'AVAILABLE')} for update`;
      for (let i = 0; i < 50; i++) ledger.deposit({ transfer_id: `a-${i}`, user_id: BUYER, currency: 'EUR', amount_minor: 1n }, T0 + 1);
      const a = store.flush().then(() => 'ok', (e: unknown) => (isLedgerError(e) ? e.code : String(e)));
      for (let i = 0; i < 50; i++) ledger.deposit({ transfer_id: `b-${i}`, user_id: SELLER, currency: 'EUR', amount_minor: 1n }, T0 + 2);
      const b = store.flush().then(() => 'ok', (e: unknown) => (isLedgerError(e) ? e.code : String(e)));
      type Activity = { pid: number; query: string };
      const waiting = async (): Promise<{ a: Activity[]; b: Activity[] }> => {
        const rows = await fresh.sql<Activity[]>`select pid, query from pg_stat_activity
          where datname = current_database() and state = 'active' and wait_event_type = 'Lock' and pid <> pg_backend_pid()`;
        return { a: rows.filter((r) => r.query.startsWith('update ledger_accounts')), b: rows.filter((r) => r.query.includes('ledger_await_batch')) };
      };
      let w = await waiting();
      for (let k = 0; k < 500 && (w.a.length === 0 || w.b.length === 0); k++) {
        await sleep(10);
        w = await waiting();
      }
      // A waits on the row lock, B has streamed its transfers and waits in PostgreSQL for A's transaction to end.
      expect(w.a.length).toBe(1);
      expect(w.b.length).toBe(1);
      const visible = async (): Promise<number> =>
        Number((await fresh.sql<{ n: string }[]>`select count(*)::text as n from ledger_transfers where id like 'a-%' or id like 'b-%'`)[0].n);
      expect(await visible()).toBe(0);
      // A's connection dies (a connection-class failure): A rolls back, so B must roll back too and wait for A's retry.
      await fresh.sql`select pg_terminate_backend(${w.a[0].pid})`;
      let retried = await waiting();
      for (let k = 0; k < 500 && (retried.a.length === 0 || retried.a[0].pid === w.a[0].pid || retried.b.length > 0); k++) {
        await sleep(10);
        retried = await waiting();
      }
      expect(retried.a.length).toBe(1); // A again, on a new connection, blocked by the same row lock
      expect(retried.a[0].pid).not.toBe(w.a[0].pid);
      expect(retried.b).toEqual([]); // B is not waiting in PostgreSQL any more: it rolled back
      expect(await visible()).toBe(0); // B did not commit without A
      expect(store.status().retries).toBeGreaterThan(0);
      await locker`rollback`;
      await store.drained();
      expect(['ok', 'EXCHANGE_UNAVAILABLE']).toContain(await a);
      expect(['ok', 'EXCHANGE_UNAVAILABLE']).toContain(await b);
      expect(store.status()).toMatchObject({ available: true, state: 'ok', backlog_batches: 0 });
      expect(store.durable_seq).toBe(ledger.core.transfer_count);
      const order = await fresh.sql<{ id: string; s: string }[]>`select id, seq::text as s from ledger_transfers order by seq`;
      expect(order.map((r) => Number(r.s))).toEqual(Array.from({ length: ledger.core.transfer_count }, (_, i) => i + 1));
      expect(order.map((r) => r.id)).toEqual(ledger.core.transfersInOrder().map((t) => t.id));
      expect((await loadLedger(fresh.sql)).snapshot()).toEqual(ledger.snapshot());
    } finally {
      locker.release();
      await pool.end({ timeout: 5 });
      await fresh.drop();
    }
  });

  it('the binary COPY stores amounts, ids, references and times exactly (compared row by row, and through a rebuild)', async () => {
    const fresh = await createTestDatabase();
    try {
      const ledger = newLedger({ record_changes: true });
      const store = new LedgerStore(fresh.sql, ledger);
      const amounts = [1n, 9_999n, 10_000n, 10_001n, 100_000_000n, 2n ** 53n - 1n, 2n ** 53n + 1n, 10n ** 30n, 123_400_000_000_000_000_000n, 10n ** 29n + 7n];
      amounts.forEach((a, i) => ledger.deposit({ transfer_id: `amt-${i}`, user_id: BUYER, currency: 'EUR', amount_minor: a }, T0 + i));
      const from = ledger.accountId(BUYER, 'EUR', 'AVAILABLE');
      const to = ledger.accountId(SELLER, 'EUR', 'AVAILABLE');
      const ids = ['back\\slash', 'all~!@#$%^&*()_+{}|:"<>?`-=[];\',./', 'x'.repeat(128)];
      const times = [-1_234_567, 946_684_799_999, 946_684_800_001];
      ids.forEach((id, i) => ledger.createTransfers([{ id, debit_account_id: from, credit_account_id: to, amount: BigInt(i + 1), code: 'TRANSFER', order_id: Number.MAX_SAFE_INTEGER - i, trade_id: 2 ** 40 + i }], times[i]));
      ledger.beginWithdrawal({ transfer_id: 'pw', user_id: BUYER, currency: 'EUR', amount_minor: 5n }, T0);
      ledger.completeWithdrawal({ transfer_id: 'pw:post', pending_id: 'pw', amount_minor: 3n }, T0 + 1);
      await store.flush();
      const rows = await fresh.sql<{ id: string; seq: string; d: string; c: string; amount: string; pending_id: string | null; code: string; flags: number; order_id: string | null; trade_id: string | null; ms: string }[]>`
        select id, seq::text, debit_account_id::text as d, credit_account_id::text as c, amount::text, pending_id, code, flags, order_id::text, trade_id::text,
               (extract(epoch from created_at) * 1000)::bigint::text as ms
        from ledger_transfers t order by t.seq`;
      expect(rows).toEqual(ledger.core.transfersInOrder().map((t) => ({
        id: t.id, seq: String(t.seq), d: String(t.debit_account_id), c: String(t.credit_account_id), amount: t.amount.toString(), pending_id: t.pending_id,
        code: t.code, flags: t.flags, order_id: t.order_id === null ? null : String(t.order_id), trade_id: t.trade_id === null ? null : String(t.trade_id),
        ms: String(t.created_at_ms),
      })));
      expect((await loadLedger(fresh.sql)).snapshot()).toEqual(ledger.snapshot());
    } finally {
      await fresh.drop();
    }
  });
});
