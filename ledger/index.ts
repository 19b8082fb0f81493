// The ledger's front door. See docs/ledger.md.
export {
  Ledger,
  type ZoneConfig, type HoldRequest, type HoldResult, type FillRequest, type FillResult, type ReleaseRequest, type ReleaseResult,
  type MoneyRequest, type Balances, type OrderHold, type HoldStatus, type TradeEscrow, type EscrowStatus, type Settlement,
  type SettlementResolution, type LedgerSnapshot, type BindRequest, type BindResult, type FeeSchedule, type FeeInForce,
} from './ledger.js';
export { LedgerError, isLedgerError, LEDGER_ERROR_CODES, type LedgerErrorCode } from './errors.js';
export {
  TRANSFER_FLAG_PENDING, TRANSFER_FLAG_POST_PENDING, TRANSFER_FLAG_VOID_PENDING, MAX_TRANSFER_ID_LENGTH, MAX_LINKED_TRANSFERS,
  type Account, type AccountKind, type Transfer, type TransferInput, type TransferCode,
} from './core.js';
export { type Pricing, buyerMaxMinor, buyerFeeFactors, settlementAmounts, formatMinor, pricingFactors, type SettlementAmounts } from './money.js';
export { type Certificate, type CertificateEvent, type ChainVerdict, type TradeSource, isRenewable, RENEWABLE_SOURCES } from './certificates.js';
export {
  LedgerStore, loadLedger, loadFeeSchedules, isConnectionError, FLUSH_UNAVAILABLE_AFTER_MS, MAX_BACKLOG_ROWS, RETRY_BACKOFF_MIN_MS, RETRY_BACKOFF_MAX_MS,
  type FlushResult, type StoreStatus, type LedgerStoreOptions,
} from './store.js';
export { walletStatement, statementToCsv, type Statement, type StatementLine, type StatementRequest, MAX_STATEMENT_LINES } from './statements.js';
