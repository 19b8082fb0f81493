/**
 * Every rejection the ledger gives carries a stable machine code and a message a person can read.
 * Nothing is changed by an operation that is rejected (linked transfers roll back as a whole).
 */
export const LEDGER_ERROR_CODES = [
  'INVALID_TRANSFER',
  'INVALID_AMOUNT',
  'INSUFFICIENT_FUNDS',
  'DUPLICATE_TRANSFER',
  'ACCOUNT_NOT_FOUND',
  'ACCOUNTS_MUST_BE_DIFFERENT',
  'CURRENCY_MISMATCH',
  'BALANCE_OVERFLOW',
  'PENDING_TRANSFER_NOT_FOUND',
  'TRANSFER_NOT_PENDING',
  'AMOUNT_EXCEEDS_PENDING',
  'LINKED_CHAIN_TOO_LONG',
  'UNKNOWN_ZONE',
  'INVALID_ZONE',
  'NEGATIVE_PRICE_UNSUPPORTED',
  'HOLD_NOT_FOUND',
  /** bindHold: the target order id already has a hold. */
  'HOLD_EXISTS',
  'ORDER_NOT_OPEN',
  'PRICE_ABOVE_LIMIT',
  'QTY_EXCEEDS_REMAINING',
  'SELF_TRADE',
  'TRADE_NOT_FOUND',
  'TRADE_NOT_OPEN',
  'TRADE_DISPUTED',
  'TRADE_NOT_DISPUTED',
  'DELIVERED_EXCEEDS_TRADE',
  'CERTIFICATE_NOT_FOUND',
  'CERTIFICATE_NOT_OWNED',
  'CERTIFICATE_RETIRED',
  'LEDGER_FULL',
  'LEDGER_CORRUPT',
  /** The store cannot reach PostgreSQL and its backlog is full (or a flush is not durable in time): retry later. */
  'EXCHANGE_UNAVAILABLE',
] as const;

export type LedgerErrorCode = (typeof LEDGER_ERROR_CODES)[number];

export class LedgerError extends Error {
  constructor(
    readonly code: LedgerErrorCode,
    message: string,
    /** For a linked chain: the index of the event that failed. */
    readonly index: number | null = null,
  ) {
    super(message);
    this.name = 'LedgerError';
  }
}

export function isLedgerError(err: unknown, code?: LedgerErrorCode): err is LedgerError {
  return err instanceof LedgerError && (code === undefined || err.code === code);
}

/** Cheap invariant check for the hot path; a failure is a bug in the ledger, not a user error. */
export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`ledger assertion failed: ${message}`);
}
