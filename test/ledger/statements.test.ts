import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { LedgerStore } from '../../ledger/store.js';
import { statementToCsv, walletStatement } from '../../ledger/statements.js';
import { BUYER, newLedger, SELLER, T0 } from './fixtures.js';
import { isLedgerError } from '../../ledger/errors.js';

let db: TestDatabase;
const ledger = newLedger({ record_changes: true });
const MIN = 60_000;

beforeAll(async () => {
  db = await createTestDatabase();
  const store = new LedgerStore(db.sql, ledger);
  ledger.deposit({ transfer_id: 'dep-1', user_id: BUYER, currency: 'EUR', amount_minor: 1_000n }, T0);
  ledger.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0 + 1 * MIN);
  ledger.fillBuyOrder({ trade_id: 10, order_id: 1, seller_id: SELLER, price_ticks: 2000, qty_wh: 10_000, interval_id: 7, source: 'SOLAR' }, T0 + 2 * MIN);
  ledger.settleTrade({ trade_id: 10, delivered_wh: 4_000 }, T0 + 3 * MIN);
  ledger.beginWithdrawal({ transfer_id: 'wd-1', user_id: BUYER, currency: 'EUR', amount_minor: 500n }, T0 + 4 * MIN);
  ledger.completeWithdrawal({ transfer_id: 'wd-1:post', pending_id: 'wd-1', amount_minor: 300n }, T0 + 5 * MIN);
  await store.flush();
});
afterAll(async () => {
  await db?.drop();
});

describe('wallet statements', () => {
  it('lists a user’s transfers with running available / held / escrow balances that end at the live balances', async () => {
    const s = await walletStatement(db.sql, { user_id: BUYER, currency: 'EUR', minor_units: 2, from_ms: T0, to_ms: T0 + 10 * MIN });
    expect(s.opening).toEqual({ available_minor: '0', held_minor: '0', escrow_minor: '0' });
    expect(s.lines.map((l) => [l.code, l.kind, l.available_delta_minor, l.held_delta_minor, l.escrow_delta_minor])).toEqual([
      ['DEPOSIT', 'POSTED', '1000', '0', '0'],
      ['HOLD', 'POSTED', '-261', '261', '0'],
      ['ESCROW', 'POSTED', '0', '-211', '211'],
      ['RELEASE', 'POSTED', '50', '-50', '0'],
      ['SETTLE', 'POSTED', '0', '0', '-75'],
      ['FEE', 'POSTED', '0', '0', '-8'],
      ['ROUNDING', 'POSTED', '0', '0', '-1'],
      ['REFUND', 'POSTED', '127', '0', '-127'],
      ['WITHDRAW', 'PENDING', '-500', '0', '0'],
      ['WITHDRAW', 'POST_PENDING', '200', '0', '0'],
    ]);
    const b = ledger.balances(BUYER, 'EUR');
    expect(s.closing).toEqual({ available_minor: b.available_minor.toString(), held_minor: '0', escrow_minor: '0' });
    expect(s.closing.available_minor).toBe('616');
  });

  it('a later period opens with the balances the earlier transfers left', async () => {
    const s = await walletStatement(db.sql, { user_id: BUYER, currency: 'EUR', minor_units: 2, from_ms: T0 + 2 * MIN, to_ms: T0 + 4 * MIN + 1 });
    expect(s.opening).toEqual({ available_minor: '739', held_minor: '261', escrow_minor: '0' });
    expect(s.lines[0].code).toBe('ESCROW');
    expect(s.lines[s.lines.length - 1]).toMatchObject({ code: 'WITHDRAW', kind: 'PENDING', available_minor: '416' });
  });

  it('the seller’s statement shows the payment net of the fee', async () => {
    const s = await walletStatement(db.sql, { user_id: SELLER, currency: 'EUR', minor_units: 2, from_ms: T0, to_ms: T0 + 10 * MIN });
    expect(s.lines.map((l) => [l.code, l.trade_id, l.available_minor])).toEqual([['SETTLE', 10, '75']]);
  });

  it('renders CSV with a header and amounts in currency units', async () => {
    const s = await walletStatement(db.sql, { user_id: BUYER, currency: 'EUR', minor_units: 2, from_ms: T0, to_ms: T0 + 10 * MIN });
    const csv = statementToCsv(s).trim().split('\n');
    expect(csv[0]).toBe('seq,at,transfer_id,code,kind,order_id,trade_id,amount,available_change,held_change,escrow_change,available,held,escrow');
    expect(csv).toHaveLength(11);
    expect(csv[2]).toMatch(/^\d+,[^,]+,o1:hold,HOLD,POSTED,1,,2\.61,-2\.61,2\.61,0\.00,7\.39,2\.61,0\.00$/);
  });

  it('an unknown user is ACCOUNT_NOT_FOUND', async () => {
    const err = await walletStatement(db.sql, { user_id: 999, currency: 'EUR', minor_units: 2, from_ms: T0, to_ms: T0 + MIN }).catch((e: unknown) => e);
    expect(isLedgerError(err, 'ACCOUNT_NOT_FOUND')).toBe(true);
  });
});
