import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { runSimulation } from './simulation.js';

const hashOf = (x: unknown): string => createHash('sha256').update(JSON.stringify(x)).digest('hex');

describe('seeded ledger simulation', () => {
  it('1,000,000 random operations keep every invariant after every step', () => {
    const { stats } = runSimulation({ seed: 20261122, steps: 1_000_000 });
    expect(stats.steps).toBe(1_000_000);
    // The run exercised every kind of operation, retries and refusals (it could not pass idle).
    for (const kind of ['deposit', 'withdraw', 'beginWithdrawal', 'finishWithdrawal', 'hold', 'fill', 'release', 'settle', 'dispute', 'resolve', 'cancelTrade', 'certificateTransfer', 'certificateRetire', 'retry', 'bindHold', 'feeChange']) {
      expect(stats.ok[kind] ?? 0, kind).toBeGreaterThan(1_000);
    }
    for (const code of ['hold:INSUFFICIENT_FUNDS', 'withdraw:INSUFFICIENT_FUNDS', 'mustBeRefused:CERTIFICATE_NOT_OWNED', 'mustBeRefused:TRADE_NOT_FOUND', 'mustBeRefused:PRICE_ABOVE_LIMIT', 'mustBeRefused:DUPLICATE_TRANSFER', 'mustBeRefused:HOLD_EXISTS', 'mustBeRefused:HOLD_NOT_FOUND']) {
      expect(stats.refused[code] ?? 0, code).toBeGreaterThan(100);
    }
    expect(stats.transfers).toBeGreaterThan(1_000_000);
    expect(stats.certificates).toBeGreaterThan(10_000);
    expect(stats.full_checks).toBe(10);
  });

  it('is deterministic: the same seed gives the same final state, another seed a different one', () => {
    const a = runSimulation({ seed: 7, steps: 20_000, users: 30 }).ledger.snapshot();
    const b = runSimulation({ seed: 7, steps: 20_000, users: 30 }).ledger.snapshot();
    const c = runSimulation({ seed: 8, steps: 20_000, users: 30 }).ledger.snapshot();
    expect(hashOf(a)).toBe(hashOf(b));
    expect(hashOf(a)).not.toBe(hashOf(c));
  });

  it('the step checks catch a balance changed behind the ledger’s back', () => {
    expect(() =>
      runSimulation({
        seed: 3, steps: 20_000, users: 10,
        afterStep: (step, ledger) => {
          if (step === 5_000) ledger.core.accounts[ledger.accountId(4, 'EUR', 'AVAILABLE')]!.credits_posted += 1n;
        },
      }),
    ).toThrow(/step 5\d\d\d: (Σ balances changed|user 4 EUR)/);
  });

  it('the checks catch a tampered certificate (the step checks when it is touched, else the next full check)', () => {
    expect(() =>
      runSimulation({
        seed: 4, steps: 30_000, users: 10, full_check_every: 1_000,
        afterStep: (step, ledger) => {
          if (step === 10_000) {
            const c = [...ledger.certificates.byId.values()].find((x) => x.status === 'ACTIVE')!;
            c.owner_id = c.owner_id === 1 ? 2 : 1;
          }
        },
      }),
    ).toThrow(/seed 4 step 1(0\d\d\d|1000): (unexpected refusal certificate(Transfer|Retire):CERTIFICATE_NOT_OWNED|(invariant: )?certificate chain)/);
  });
});
