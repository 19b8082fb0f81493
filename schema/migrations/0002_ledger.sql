-- kwx schema v1, part 2: the ledger (see docs/ledger.md).
--
-- One writer (the in-memory ledger) appends here in batches; on start it rebuilds its state by
-- replaying ledger_transfers in seq order and loading the flow tables. Money is integer minor
-- units as NUMERIC(38,0), energy integer Wh, times are the ledger's input clock (ms → timestamptz).
-- User, order, trade and zone ids are the engine's bigints; they are not foreign keys so that the
-- ledger can be written (and tested) without the trading read model.

create table ledger_accounts (
  id               bigint primary key check (id > 0),
  user_id          bigint check (user_id > 0),            -- null: a platform account
  currency         char(3) not null check (currency ~ '^[A-Z]{3}$'),
  kind             text not null check (kind in ('AVAILABLE', 'HELD', 'ESCROW', 'FEES', 'ROUNDING', 'EXTERNAL')),
  flags            integer not null default 0,
  -- cumulative amounts as of the last committed batch; a rebuild recomputes them from
  -- ledger_transfers and refuses to start if they differ
  debits_posted    numeric(38, 0) not null default 0 check (debits_posted >= 0),
  credits_posted   numeric(38, 0) not null default 0 check (credits_posted >= 0),
  debits_pending   numeric(38, 0) not null default 0 check (debits_pending >= 0),
  credits_pending  numeric(38, 0) not null default 0 check (credits_pending >= 0),
  created_at       timestamptz not null,
  check ((user_id is null) = (kind in ('FEES', 'ROUNDING', 'EXTERNAL'))),
  -- no overdraft on anything but the outside world (pending debits included)
  check (kind = 'EXTERNAL' or debits_posted + debits_pending <= credits_posted)
);
create unique index ledger_accounts_owner_key on ledger_accounts (coalesce(user_id, 0), currency, kind);

-- Immutable transfers; `id` is the client-chosen idempotency key, `seq` the order of application.
create table ledger_transfers (
  id                 text primary key check (length(id) between 1 and 128),
  seq                bigint not null check (seq > 0),
  debit_account_id   bigint not null,
  credit_account_id  bigint not null,
  amount             numeric(38, 0) not null check (amount >= 0),
  pending_id         text,
  code               text not null check (code in ('DEPOSIT', 'WITHDRAW', 'HOLD', 'RELEASE', 'ESCROW', 'SETTLE', 'FEE', 'ROUNDING', 'REFUND', 'TRANSFER')),
  flags              smallint not null default 0 check (flags in (0, 1, 2, 4)),   -- 1 pending, 2 post, 4 void
  order_id           bigint,
  trade_id           bigint,
  created_at         timestamptz not null,
  unique (seq),
  check (debit_account_id <> credit_account_id),
  check ((flags in (2, 4)) = (pending_id is not null))
);
-- statements: a user's transfers over a period
create index ledger_transfers_debit_idx on ledger_transfers (debit_account_id, created_at);
create index ledger_transfers_credit_idx on ledger_transfers (credit_account_id, created_at);
create index ledger_transfers_trade_idx on ledger_transfers (trade_id) where trade_id is not null;

-- Two-phase transfers: state of every pending transfer (a pending resolves at most once).
create table ledger_pending_transfers (
  id             text primary key references ledger_transfers (id),
  status         text not null check (status in ('PENDING', 'POSTED', 'VOIDED')),
  resolved_by    text references ledger_transfers (id),
  posted_amount  numeric(38, 0) not null default 0 check (posted_amount >= 0),
  check ((status = 'PENDING') = (resolved_by is null))
);

-- Buy-order holds, with the zone pricing snapshotted when the order was placed.
create table ledger_order_holds (
  order_id                  bigint primary key check (order_id > 0),
  user_id                   bigint not null check (user_id > 0),
  zone_id                   bigint not null check (zone_id > 0),
  currency                  char(3) not null,
  minor_units               smallint not null check (minor_units between 0 and 8),
  tick_size                 text not null,
  fee_bps                   integer not null check (fee_bps between 0 and 10000),
  fee_per_kwh_minor         numeric(38, 0) not null check (fee_per_kwh_minor >= 0),
  limit_price_ticks         bigint not null check (limit_price_ticks >= 0),
  qty_wh                    bigint not null check (qty_wh > 0),
  held_minor                numeric(38, 0) not null check (held_minor >= 0),
  remaining_wh              bigint not null check (remaining_wh between 0 and qty_wh),
  remaining_minor           numeric(38, 0) not null check (remaining_minor between 0 and held_minor),
  status                    text not null check (status in ('OPEN', 'FILLED', 'CANCELLED', 'EXPIRED')),
  released_on_close_minor   numeric(38, 0) not null default 0 check (released_on_close_minor >= 0),
  created_at                timestamptz not null,
  updated_at                timestamptz not null,
  check (status = 'OPEN' or remaining_minor = 0),
  check ((status = 'FILLED') = (remaining_wh = 0) or status in ('CANCELLED', 'EXPIRED'))
);
create index ledger_order_holds_user_idx on ledger_order_holds (user_id) where status = 'OPEN';

-- Trade escrow: the buyer's money for one trade from the fill until settlement.
create table ledger_escrows (
  trade_id           bigint primary key check (trade_id > 0),
  order_id           bigint not null references ledger_order_holds (order_id),
  buyer_id           bigint not null,
  seller_id          bigint not null,
  zone_id            bigint not null,
  interval_id        bigint not null,
  source             text not null check (source in ('SOLAR', 'WIND', 'HYDRO', 'BATTERY')),
  price_ticks        bigint not null check (price_ticks >= 0),
  qty_wh             bigint not null check (qty_wh > 0),
  escrow_minor       numeric(38, 0) not null check (escrow_minor >= 0),
  released_minor     numeric(38, 0) not null check (released_minor >= 0),
  status             text not null check (status in ('HELD', 'DISPUTED', 'SETTLED', 'CANCELLED')),
  dispute_reason     text,
  created_at         timestamptz not null,
  updated_at         timestamptz not null,
  check (buyer_id <> seller_id),
  check (status <> 'DISPUTED' or dispute_reason is not null)
);
create index ledger_escrows_open_idx on ledger_escrows (status) where status in ('HELD', 'DISPUTED');
create index ledger_escrows_buyer_idx on ledger_escrows (buyer_id);
create index ledger_escrows_seller_idx on ledger_escrows (seller_id);

create table ledger_settlements (
  trade_id           bigint primary key references ledger_escrows (trade_id),
  delivered_wh       bigint not null check (delivered_wh >= 0),
  buyer_paid_minor   numeric(38, 0) not null check (buyer_paid_minor >= 0),
  seller_net_minor   numeric(38, 0) not null check (seller_net_minor >= 0),
  fee_minor          numeric(38, 0) not null check (fee_minor >= 0),
  rounding_minor     numeric(38, 0) not null check (rounding_minor >= 0),
  refund_minor       numeric(38, 0) not null check (refund_minor >= 0),
  certificate_id     text,
  resolution         text not null check (resolution in ('VERIFIED', 'DISPUTE_RESOLVED', 'CANCELLED')),
  settled_at         timestamptz not null,
  check (buyer_paid_minor = seller_net_minor + fee_minor + rounding_minor),
  check (resolution <> 'CANCELLED' or (delivered_wh = 0 and certificate_id is null))
);

-- Carbon certificates: one per settled renewable trade, never two for the same trade.
create table carbon_certificates (
  id             text primary key,
  trade_id       bigint not null references ledger_settlements (trade_id),
  zone_id        bigint not null,
  interval_id    bigint not null,
  source         text not null check (source in ('SOLAR', 'WIND', 'HYDRO')),
  producer_id    bigint not null,
  owner_id       bigint not null,
  energy_wh      bigint not null check (energy_wh > 0),
  status         text not null check (status in ('ACTIVE', 'RETIRED')),
  issued_at      timestamptz not null,
  retired_at     timestamptz,
  hash           char(64) not null unique,
  constraint carbon_certificates_one_per_trade unique (trade_id),
  check ((status = 'RETIRED') = (retired_at is not null))
);
create index carbon_certificates_owner_idx on carbon_certificates (owner_id);

-- The certificate hash chain: every issue, transfer and retirement, append-only.
create table carbon_certificate_events (
  seq              bigint primary key check (seq > 0),
  event_id         text not null unique,
  certificate_id   text not null references carbon_certificates (id),
  kind             text not null check (kind in ('ISSUE', 'TRANSFER', 'RETIRE')),
  from_user_id     bigint,
  to_user_id       bigint,
  energy_wh        bigint not null check (energy_wh > 0),
  at               timestamptz not null,
  at_ms            bigint not null,
  prev_hash        char(64) not null,
  hash             char(64) not null unique
);
-- a certificate is issued once and retired at most once
create unique index carbon_certificate_events_issue_key on carbon_certificate_events (certificate_id) where kind = 'ISSUE';
create unique index carbon_certificate_events_retire_key on carbon_certificate_events (certificate_id) where kind = 'RETIRE';
