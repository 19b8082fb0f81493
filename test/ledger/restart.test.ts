import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { Ledger } from '../../ledger/ledger.js';
import { LedgerStore, loadLedger } from '../../ledger/store.js';
import { isLedgerError } from '../../ledger/errors.js';
import { runSimulation, SIM_ZONES } from './simulation.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe('persistence and restart', () => {
  it('rebuilds balances, holds, escrows, settlements and certificates from PostgreSQL equal to what they were', async () => {
    const ledger = new Ledger();
    const store = new LedgerStore(db.sql, ledger);
    const flushes: Promise<unknown>[] = [];
    const { stats } = runSimulation({
      seed: 99, steps: 15_000, users: 40, ledger,
      afterStep: (step) => {
        if (step % 1_000 === 0) flushes.push(store.flush());
      },
    });
    flushes.push(store.flush());
    await Promise.all(flushes);
    expect(stats.certificates).toBeGreaterThan(100);
    expect(stats.ok.beginWithdrawal).toBeGreaterThan(100);
    const before = ledger.snapshot();

    const rebuilt = await loadLedger(db.sql);
    expect(rebuilt.snapshot()).toEqual(before);
    expect(rebuilt.verifyCertificates()).toEqual({ ok: true, events: before.certificate_events.length });

    // The rebuilt ledger goes on where the old one stopped: retries stay harmless, new work persists.
    for (const z of SIM_ZONES) rebuilt.configureZone(z, 1_800_000_000_000);
    const settled = [...ledger.settlements.values()][0];
    expect(rebuilt.settleTrade({ trade_id: settled.trade_id, delivered_wh: settled.delivered_wh }, 1_800_000_000_000)).toEqual(settled);
    const store2 = new LedgerStore(db.sql, rebuilt);
    rebuilt.deposit({ transfer_id: 'after-restart', user_id: 1, currency: 'EUR', amount_minor: 12_345n }, 1_800_000_000_000);
    await store2.flush();
    const again = await loadLedger(db.sql);
    expect(again.snapshot()).toEqual(rebuilt.snapshot());
  });

  it('the database refuses a second certificate for the same trade', async () => {
    const [c] = await db.sql<{ id: string; trade_id: string }[]>`select id, trade_id from carbon_certificates limit 1`;
    await expect(db.sql`insert into carbon_certificates (id, trade_id, zone_id, interval_id, source, producer_id, owner_id, energy_wh, status, issued_at, hash)
      values ('CERT-copy', ${c.trade_id}, 1, 1, 'SOLAR', 1, 2, 10, 'ACTIVE', now(), ${'f'.repeat(64)})`).rejects.toThrow(/carbon_certificates_one_per_trade/);
  });

  it('refuses to start (LEDGER_CORRUPT) when a stored transfer or certificate was altered', async () => {
    const [t] = await db.sql<{ id: string; amount: string }[]>`select id, amount from ledger_transfers where code = 'DEPOSIT' order by seq limit 1`;
    await db.sql`update ledger_transfers set amount = amount + 1 where id = ${t.id}`;
    const err1 = await loadLedger(db.sql).catch((e: unknown) => e);
    expect(isLedgerError(err1, 'LEDGER_CORRUPT')).toBe(true);
    await db.sql`update ledger_transfers set amount = ${t.amount} where id = ${t.id}`;

    const [c] = await db.sql<{ id: string; owner_id: string }[]>`select id, owner_id from carbon_certificates where status = 'ACTIVE' limit 1`;
    await db.sql`update carbon_certificates set owner_id = owner_id + 1 where id = ${c.id}`;
    const err2 = await loadLedger(db.sql).catch((e: unknown) => e);
    expect(isLedgerError(err2, 'LEDGER_CORRUPT')).toBe(true);
    expect((err2 as Error).message).toMatch(/certificate/);
    await db.sql`update carbon_certificates set owner_id = ${c.owner_id} where id = ${c.id}`;
    await expect(loadLedger(db.sql)).resolves.toBeInstanceOf(Ledger);
  });
});
