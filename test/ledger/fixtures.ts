import { Ledger, type ZoneConfig } from '../../ledger/ledger.js';
import { LedgerError, type LedgerErrorCode } from '../../ledger/errors.js';

/** EUR with cents, a tick of 0.0001 EUR/kWh, 50 bps + 1 cent per kWh per side. */
export const ZONE: ZoneConfig = { zone_id: 1, currency: 'EUR', minor_units: 2, tick_size: '0.0001', fee_bps: 50, fee_per_kwh_minor: 1n };
export const T0 = 1_700_000_000_000;
export const BUYER = 1;
export const SELLER = 2;
export const OTHER = 3;

export function newLedger(options: { record_changes?: boolean } = {}): Ledger {
  const l = new Ledger(options);
  l.configureZone(ZONE, T0);
  for (const u of [BUYER, SELLER, OTHER]) l.openUserAccounts(u, 'EUR', T0);
  return l;
}

/** Runs fn and returns the LedgerError code it throws (fails the test if it does not throw one). */
export function codeOf(fn: () => unknown): LedgerErrorCode {
  try {
    fn();
  } catch (err) {
    if (err instanceof LedgerError) return err.code;
    throw err;
  }
  throw new Error('expected a LedgerError, but the call succeeded');
}
