import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { LedgerStore, loadLedger, MAX_TIMED_FLUSHES_IN_FLIGHT } from '../../ledger/store.js';
import { BUYER, newLedger, T0 } from './fixtures.js';

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
});
