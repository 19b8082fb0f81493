import { describe, expect, it } from 'vitest';
import { availableOf, balanceOf, LedgerCore, TRANSFER_FLAG_PENDING, TRANSFER_FLAG_POST_PENDING, TRANSFER_FLAG_VOID_PENDING } from '../../ledger/core.js';
import { codeOf, T0 } from './fixtures.js';

function setup() {
  const core = new LedgerCore();
  const ext = core.openAccount(null, 'EUR', 'EXTERNAL', T0);
  const a = core.openAccount(1, 'EUR', 'AVAILABLE', T0);
  const b = core.openAccount(2, 'EUR', 'AVAILABLE', T0);
  const usd = core.openAccount(3, 'USD', 'AVAILABLE', T0);
  core.createTransfer({ id: 'dep', debit_account_id: ext.id, credit_account_id: a.id, amount: 1000n, code: 'DEPOSIT' }, T0);
  return { core, ext, a, b, usd };
}

describe('core transfers', () => {
  it('moves value between two accounts and keeps Σ balances at zero', () => {
    const { core, ext, a, b } = setup();
    core.createTransfer({ id: 'x', debit_account_id: a.id, credit_account_id: b.id, amount: 300n, code: 'TRANSFER' }, T0);
    expect([balanceOf(ext), balanceOf(a), balanceOf(b)]).toEqual([-1000n, 700n, 300n]);
    core.checkInvariants();
  });

  it('a retry with the same id and body returns the original transfer and changes nothing', () => {
    const { core, a, b } = setup();
    const input = { id: 'x', debit_account_id: a.id, credit_account_id: b.id, amount: 300n, code: 'TRANSFER' as const };
    const first = core.createTransfer(input, T0);
    const again = core.createTransfer({ ...input }, T0 + 5);
    expect(again.created).toBe(false);
    expect(again.transfer).toEqual(first.transfer);
    expect([balanceOf(a), balanceOf(b), core.transfer_count]).toEqual([700n, 300n, 2]);
  });

  it('the same id with a different body is DUPLICATE_TRANSFER', () => {
    const { core, a, b } = setup();
    core.createTransfer({ id: 'x', debit_account_id: a.id, credit_account_id: b.id, amount: 300n, code: 'TRANSFER' }, T0);
    expect(codeOf(() => core.createTransfer({ id: 'x', debit_account_id: a.id, credit_account_id: b.id, amount: 301n, code: 'TRANSFER' }, T0))).toBe('DUPLICATE_TRANSFER');
    expect(balanceOf(b)).toBe(300n);
  });

  it('refuses with a code and changes nothing: INSUFFICIENT_FUNDS, ACCOUNT_NOT_FOUND, CURRENCY_MISMATCH, ACCOUNTS_MUST_BE_DIFFERENT, INVALID_AMOUNT, INVALID_TRANSFER', () => {
    const { core, a, b, usd } = setup();
    const t = (over: object) => () => core.createTransfer({ id: 'y', debit_account_id: a.id, credit_account_id: b.id, amount: 1n, code: 'TRANSFER', ...over }, T0);
    expect(codeOf(t({ amount: 1001n }))).toBe('INSUFFICIENT_FUNDS');
    expect(codeOf(t({ credit_account_id: 99 }))).toBe('ACCOUNT_NOT_FOUND');
    expect(codeOf(t({ debit_account_id: 0 }))).toBe('ACCOUNT_NOT_FOUND');
    expect(codeOf(t({ credit_account_id: usd.id }))).toBe('CURRENCY_MISMATCH');
    expect(codeOf(t({ credit_account_id: a.id }))).toBe('ACCOUNTS_MUST_BE_DIFFERENT');
    expect(codeOf(t({ amount: 0n }))).toBe('INVALID_AMOUNT');
    expect(codeOf(t({ amount: -5n }))).toBe('INVALID_AMOUNT');
    expect(codeOf(t({ id: '' }))).toBe('INVALID_TRANSFER');
    expect(codeOf(t({ id: 'has space' }))).toBe('INVALID_TRANSFER');
    expect(codeOf(t({ code: 'GIFT' }))).toBe('INVALID_TRANSFER');
    expect(codeOf(t({ flags: TRANSFER_FLAG_PENDING | TRANSFER_FLAG_POST_PENDING }))).toBe('INVALID_TRANSFER');
    expect(core.transfer_count).toBe(1);
    expect(balanceOf(a)).toBe(1000n);
    core.checkInvariants();
  });

  it('a pending transfer reserves funds; a partial post moves part and releases the rest', () => {
    const { core, a, b } = setup();
    core.createTransfer({ id: 'p', debit_account_id: a.id, credit_account_id: b.id, amount: 600n, code: 'TRANSFER', flags: TRANSFER_FLAG_PENDING }, T0);
    expect(availableOf(a)).toBe(400n);
    expect(codeOf(() => core.createTransfer({ id: 'q', debit_account_id: a.id, credit_account_id: b.id, amount: 401n, code: 'TRANSFER' }, T0))).toBe('INSUFFICIENT_FUNDS');
    expect(codeOf(() => core.createTransfer({ id: 'post', debit_account_id: a.id, credit_account_id: b.id, amount: 601n, code: 'TRANSFER', flags: TRANSFER_FLAG_POST_PENDING, pending_id: 'p' }, T0))).toBe('AMOUNT_EXCEEDS_PENDING');
    core.createTransfer({ id: 'post', debit_account_id: a.id, credit_account_id: b.id, amount: 250n, code: 'TRANSFER', flags: TRANSFER_FLAG_POST_PENDING, pending_id: 'p' }, T0);
    expect([availableOf(a), balanceOf(b), a.debits_pending, b.credits_pending]).toEqual([750n, 250n, 0n, 0n]);
    expect(codeOf(() => core.createTransfer({ id: 'void', debit_account_id: a.id, credit_account_id: b.id, amount: 0n, code: 'TRANSFER', flags: TRANSFER_FLAG_VOID_PENDING, pending_id: 'p' }, T0))).toBe('TRANSFER_NOT_PENDING');
    expect(codeOf(() => core.createTransfer({ id: 'void2', debit_account_id: a.id, credit_account_id: b.id, amount: 0n, code: 'TRANSFER', flags: TRANSFER_FLAG_VOID_PENDING, pending_id: 'nope' }, T0))).toBe('PENDING_TRANSFER_NOT_FOUND');
    core.checkInvariants();
  });

  it('a void releases the whole pending amount', () => {
    const { core, a, b } = setup();
    core.createTransfer({ id: 'p', debit_account_id: a.id, credit_account_id: b.id, amount: 600n, code: 'TRANSFER', flags: TRANSFER_FLAG_PENDING }, T0);
    const v = core.createTransfer({ id: 'v', debit_account_id: a.id, credit_account_id: b.id, amount: 0n, code: 'TRANSFER', flags: TRANSFER_FLAG_VOID_PENDING, pending_id: 'p' }, T0);
    expect(v.transfer.amount).toBe(600n);
    expect([availableOf(a), balanceOf(b)]).toEqual([1000n, 0n]);
    expect(core.pendings.get('p')!.status).toBe('VOIDED');
    core.checkInvariants();
  });

  it('linked transfers apply all or none: a failure in the middle undoes the earlier ones and names the index', () => {
    const { core, a, b, ext } = setup();
    const chain = [
      { id: 'l1', debit_account_id: a.id, credit_account_id: b.id, amount: 400n, code: 'TRANSFER' as const },
      { id: 'l2', debit_account_id: a.id, credit_account_id: b.id, amount: 100n, code: 'TRANSFER' as const, flags: TRANSFER_FLAG_PENDING },
      { id: 'l3', debit_account_id: a.id, credit_account_id: ext.id, amount: 600n, code: 'WITHDRAW' as const },
    ];
    let index: number | null = null;
    try {
      core.createLinked(chain, T0);
    } catch (err) {
      index = (err as { index: number }).index;
      expect((err as { code: string }).code).toBe('INSUFFICIENT_FUNDS');
    }
    expect(index).toBe(2);
    expect([balanceOf(a), availableOf(a), balanceOf(b), core.transfer_count, core.transfer('l1') !== undefined, core.pendings.has('l2')]).toEqual([1000n, 1000n, 0n, 1, false, false]);
    core.checkInvariants();
    core.createLinked(chain.slice(0, 2), T0);
    expect(availableOf(a)).toBe(500n);
  });

  it('undoing a linked post restores the pending transfer', () => {
    const { core, a, b } = setup();
    core.createTransfer({ id: 'p', debit_account_id: a.id, credit_account_id: b.id, amount: 600n, code: 'TRANSFER', flags: TRANSFER_FLAG_PENDING }, T0);
    expect(codeOf(() => core.createLinked([
      { id: 'post', debit_account_id: a.id, credit_account_id: b.id, amount: 600n, code: 'TRANSFER', flags: TRANSFER_FLAG_POST_PENDING, pending_id: 'p' },
      { id: 'x', debit_account_id: a.id, credit_account_id: b.id, amount: 401n, code: 'TRANSFER' },
    ], T0))).toBe('INSUFFICIENT_FUNDS');
    expect(core.pendings.get('p')!.status).toBe('PENDING');
    expect([availableOf(a), a.debits_pending, balanceOf(b)]).toEqual([400n, 600n, 0n]);
    core.checkInvariants();
  });

  it('the invariant check fails when a balance is changed behind the ledger’s back', () => {
    const { core, b } = setup();
    b.credits_posted += 1n;
    expect(() => core.checkInvariants()).toThrow(/Σ debits_posted/);
  });
});
