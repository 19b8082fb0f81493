-- Ledger: a buy hold can move to another order id (Ledger.bindHold: the gateway holds a BUY under a
-- temporary id and moves it to the engine's order id when the order is accepted), and an escrow keeps
-- the platform fee in force at trade time (the fee schedule by effective_from; see docs/ledger.md).

-- A moved hold is closed (status MOVED, nothing held) and names the order it moved to; the new hold
-- names the one it came from. No money moves: both are in the same HELD account.
alter table ledger_order_holds drop constraint ledger_order_holds_status_check;
alter table ledger_order_holds add constraint ledger_order_holds_status_check
  check (status in ('OPEN', 'FILLED', 'CANCELLED', 'EXPIRED', 'MOVED'));
alter table ledger_order_holds
  add column moved_to_order_id bigint references ledger_order_holds (order_id),
  add column bound_from_order_id bigint references ledger_order_holds (order_id);
alter table ledger_order_holds add constraint ledger_order_holds_moved_check
  check ((status = 'MOVED') = (moved_to_order_id is not null));
create unique index ledger_order_holds_bound_from_key on ledger_order_holds (bound_from_order_id) where bound_from_order_id is not null;

-- The fee schedule in force when the trade happened (null on rows written before this migration:
-- the hold's snapshot, which is what those trades were charged).
alter table ledger_escrows
  add column trade_fee_bps integer check (trade_fee_bps between 0 and 10000),
  add column trade_fee_per_kwh_minor numeric(38, 0) check (trade_fee_per_kwh_minor >= 0),
  add constraint ledger_escrows_trade_fee_check check ((trade_fee_bps is null) = (trade_fee_per_kwh_minor is null));
