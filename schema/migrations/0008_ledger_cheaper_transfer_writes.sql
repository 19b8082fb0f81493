-- Ledger: cheaper writes of the row every transfer adds (measured per 10,000-transfer batch of
-- PostgreSQL backend CPU, binary COPY, 1,000 accounts: ~76 ms before, ~55 ms after; see docs/ledger.md).
--
-- 1. Transfer ids compare byte-wise (collation "C"): ids are printable ASCII, nothing sorts them
--    by language rules, and the primary key's comparisons skip strcoll (~5 %).
alter table ledger_pending_transfers
  drop constraint ledger_pending_transfers_id_fkey,
  drop constraint ledger_pending_transfers_resolved_by_fkey;
alter table ledger_transfers
  alter column id type text collate "C",
  alter column pending_id type text collate "C";
alter table ledger_pending_transfers
  alter column id type text collate "C",
  alter column resolved_by type text collate "C";
alter table ledger_pending_transfers
  add constraint ledger_pending_transfers_id_fkey foreign key (id) references ledger_transfers (id),
  add constraint ledger_pending_transfers_resolved_by_fkey foreign key (resolved_by) references ledger_transfers (id);

-- 2. Statements find an account's transfers through ONE GIN index over both account columns
--    instead of two B-trees: an insert appends one entry to the GIN pending list, merged into the
--    index in bulk later (sorted), which costs less than two random B-tree inserts per transfer
--    (~15 %). Queries use `array[debit_account_id, credit_account_id] && ids` (ledger/statements.ts).
drop index ledger_transfers_debit_account_idx;
drop index ledger_transfers_credit_account_idx;
create index ledger_transfers_accounts_gin on ledger_transfers using gin ((array[debit_account_id, credit_account_id]));

-- 3. Account rows are rewritten (balances) by every batch: room on each page lets PostgreSQL
--    update them in place (HOT: no index entries, old versions pruned on the page) (~8 %).
--    Applies to pages written from now on (a VACUUM FULL applies it to existing ones).
alter table ledger_accounts set (fillfactor = 30);
