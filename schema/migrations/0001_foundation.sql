-- kwx schema v1, part 1: identity, zones and intervals, assets, orders and trades, the engine
-- journal, communities, prices, notifications, audit, compliance, fees, tariffs and bills.
-- Part 2 (0002_ledger.sql) holds the ledger; part 3 (0003_ingest.sql) readings and telemetry.
--
-- Units: energy in integer Wh (bigint), power in integer W, prices in integer ticks per kWh
-- (a zone's tick is a decimal currency amount), money in integer minor units as NUMERIC(38,0).

create table users (
  id            bigint generated always as identity primary key,
  email         text not null check (email ~ '^[^@\s]+@[^@\s]+$' and length(email) <= 254),
  name          text not null check (length(name) between 1 and 200),
  role          text not null check (role in ('PROSUMER', 'CONSUMER', 'GRID_OPERATOR', 'ADMIN')),
  is_active     boolean not null default true,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
create unique index users_email_key on users (lower(email));

-- A user's API keys. The secret is shown once at creation; only a hash (HMAC keys) or the public
-- key (Ed25519 keys) is kept.
create table api_keys (
  id            text primary key check (id ~ '^[A-Za-z0-9_-]{8,64}$'),
  user_id       bigint not null references users (id),
  algorithm     text not null check (algorithm in ('HMAC_SHA256', 'ED25519')),
  secret_hash   bytea,
  public_key    bytea,
  label         text not null default '' check (length(label) <= 200),
  created_at    timestamptz not null default now(),
  revoked_at    timestamptz,
  last_used_at  timestamptz,
  check ((algorithm = 'HMAC_SHA256' and secret_hash is not null) or (algorithm = 'ED25519' and public_key is not null))
);
create index api_keys_user_idx on api_keys (user_id);

create table grid_zones (
  id                          bigint generated always as identity primary key,
  code                        text not null unique check (code ~ '^[A-Z0-9][A-Z0-9_-]{1,31}$'),
  name                        text not null check (length(name) between 1 and 200),
  status                      text not null default 'ACTIVE' check (status in ('ACTIVE', 'HALTED', 'MAINTENANCE')),
  currency                    char(3) not null check (currency ~ '^[A-Z]{3}$'),
  currency_minor_units        smallint not null default 2 check (currency_minor_units between 0 and 8),
  -- price tick in currency per kWh, e.g. 0.0001
  tick_size                   numeric(20, 10) not null check (tick_size > 0),
  lot_wh                      bigint not null default 1 check (lot_wh > 0),
  capacity_w                  bigint not null check (capacity_w > 0),
  price_band_min_ticks        bigint not null,
  price_band_max_ticks        bigint not null,
  min_order_wh                bigint not null default 1 check (min_order_wh > 0),
  max_order_wh                bigint not null check (max_order_wh > 0),
  max_open_orders_per_user    integer not null default 200 check (max_open_orders_per_user > 0),
  interval_minutes            integer not null default 15 check (interval_minutes in (5, 15, 30, 60)),
  gate_open_lead_minutes      integer not null default 1440 check (gate_open_lead_minutes > 0),
  gate_close_lead_minutes     integer not null default 5 check (gate_close_lead_minutes >= 0),
  timezone                    text not null default 'UTC',
  created_at                  timestamptz not null default now(),
  updated_at                  timestamptz not null default now(),
  check (price_band_min_ticks <= price_band_max_ticks),
  check (min_order_wh <= max_order_wh),
  check (gate_close_lead_minutes < gate_open_lead_minutes)
);

-- A user's home zone is optional (an operator runs several).
alter table users add column home_zone_id bigint references grid_zones (id);

-- A product: one delivery interval of one zone. Trading runs from gate opening to gate closure.
create table delivery_intervals (
  id              bigint generated always as identity primary key,
  zone_id         bigint not null references grid_zones (id),
  starts_at       timestamptz not null,
  ends_at         timestamptz not null,
  gate_opens_at   timestamptz not null,
  gate_closes_at  timestamptz not null,
  capacity_wh     bigint not null check (capacity_wh > 0),
  status          text not null default 'SCHEDULED'
                  check (status in ('SCHEDULED', 'OPEN', 'CLOSED', 'VERIFYING', 'SETTLED')),
  unique (zone_id, starts_at),
  check (ends_at > starts_at),
  check (gate_opens_at < gate_closes_at),
  check (gate_closes_at <= starts_at)
);
create index delivery_intervals_status_idx on delivery_intervals (status, gate_closes_at);

create table energy_sources (
  id            bigint generated always as identity primary key,
  user_id       bigint not null references users (id),
  zone_id       bigint not null references grid_zones (id),
  kind          text not null check (kind in ('SOLAR', 'WIND', 'BATTERY', 'HYDRO')),
  capacity_w    bigint not null check (capacity_w > 0),
  installed_on  date,
  is_active     boolean not null default true,
  created_at    timestamptz not null default now()
);
create index energy_sources_user_idx on energy_sources (user_id, zone_id) where is_active;

create table smart_meters (
  id              bigint generated always as identity primary key,
  serial          text not null check (serial ~ '^[A-Za-z0-9_.:-]{3,64}$'),
  user_id         bigint not null references users (id),
  zone_id         bigint not null references grid_zones (id),
  status          text not null default 'ACTIVE' check (status in ('ACTIVE', 'INACTIVE', 'MAINTENANCE')),
  -- the most the meter can plausibly register, import or export
  max_power_w     bigint not null check (max_power_w > 0),
  interval_minutes integer not null default 15 check (interval_minutes in (1, 5, 15, 30, 60)),
  token_hash      bytea,
  registered_at   timestamptz not null default now()
);
create unique index smart_meters_serial_key on smart_meters (serial);
create index smart_meters_user_idx on smart_meters (user_id);
create index smart_meters_zone_idx on smart_meters (zone_id);

create table devices (
  id              bigint generated always as identity primary key,
  serial          text not null unique check (serial ~ '^[A-Za-z0-9_.:-]{3,64}$'),
  user_id         bigint not null references users (id),
  meter_id        bigint references smart_meters (id),
  source_id       bigint references energy_sources (id),
  kind            text not null check (kind in ('INVERTER', 'BATTERY', 'EV_CHARGER', 'HEAT_PUMP', 'WIND_TURBINE', 'HYDRO_TURBINE', 'GATEWAY', 'OTHER')),
  status          text not null default 'ACTIVE' check (status in ('ACTIVE', 'INACTIVE', 'MAINTENANCE')),
  token_hash      bytea,
  registered_at   timestamptz not null default now()
);
create index devices_user_idx on devices (user_id);

-- Read model of the engine's orders, projected from the journal (never written by the gateway).
create table orders (
  id                bigint primary key,
  zone_id           bigint not null references grid_zones (id),
  interval_id       bigint not null references delivery_intervals (id),
  user_id           bigint not null references users (id),
  client_order_id   text not null check (length(client_order_id) between 1 and 64),
  side              text not null check (side in ('BUY', 'SELL')),
  order_type        text not null check (order_type in ('LIMIT', 'MARKET', 'IOC', 'FOK', 'POST_ONLY')),
  source            text not null check (source in ('SOLAR', 'WIND', 'BATTERY', 'HYDRO', 'ANY')),
  stp_mode          text not null default 'CANCEL_NEWEST' check (stp_mode in ('CANCEL_NEWEST', 'CANCEL_OLDEST', 'CANCEL_BOTH')),
  price_ticks       bigint not null,
  qty_wh            bigint not null check (qty_wh > 0),
  filled_wh         bigint not null default 0 check (filled_wh >= 0),
  status            text not null check (status in ('ACTIVE', 'PARTIALLY_FILLED', 'MATCHED', 'CANCELLED', 'EXPIRED')),
  cancel_reason     text check (cancel_reason in ('USER', 'SELF_TRADE', 'UNFILLED', 'AMEND', 'MASS_CANCEL', 'HALT')),
  expires_at        timestamptz,
  zone_seq          bigint not null,
  created_at        timestamptz not null,
  updated_at        timestamptz not null,
  check (filled_wh <= qty_wh),
  check (side = 'BUY' or source <> 'ANY'),
  check ((status = 'CANCELLED') = (cancel_reason is not null))
);
-- a client order id is unique per user among open orders
create unique index orders_open_client_id_key on orders (user_id, client_order_id) where status in ('ACTIVE', 'PARTIALLY_FILLED');
create index orders_user_idx on orders (user_id, created_at desc);
create index orders_book_idx on orders (zone_id, interval_id, status);

create table trades (
  id                bigint primary key,
  zone_id           bigint not null references grid_zones (id),
  interval_id       bigint not null references delivery_intervals (id),
  buy_order_id      bigint not null references orders (id),
  sell_order_id     bigint not null references orders (id),
  buyer_id          bigint not null references users (id),
  seller_id         bigint not null references users (id),
  maker_side        text not null check (maker_side in ('BUY', 'SELL')),
  source            text not null check (source in ('SOLAR', 'WIND', 'BATTERY', 'HYDRO')),
  price_ticks       bigint not null,
  qty_wh            bigint not null check (qty_wh > 0),
  status            text not null default 'PENDING' check (status in ('PENDING', 'DELIVERED', 'SETTLED', 'DISPUTED', 'CANCELLED')),
  zone_seq          bigint not null,
  executed_at       timestamptz not null,
  updated_at        timestamptz not null default now(),
  check (buyer_id <> seller_id),
  check (buy_order_id <> sell_order_id)
);
create index trades_book_idx on trades (zone_id, interval_id);
create index trades_buyer_idx on trades (buyer_id, executed_at desc);
create index trades_seller_idx on trades (seller_id, executed_at desc);
create index trades_status_idx on trades (status) where status in ('PENDING', 'DELIVERED', 'DISPUTED');

-- The engine journal: every sequenced command and its events, per zone, append-only.
create table engine_journal (
  zone_id     bigint not null references grid_zones (id),
  seq         bigint not null check (seq > 0),
  kind        smallint not null,
  payload     bytea not null,
  ts          timestamptz not null,
  primary key (zone_id, seq)
);

create table engine_snapshots (
  zone_id     bigint not null references grid_zones (id),
  seq         bigint not null check (seq >= 0),
  state       bytea not null,
  state_hash  text not null,
  taken_at    timestamptz not null default now(),
  primary key (zone_id, seq)
);

create table community_groups (
  id          bigint generated always as identity primary key,
  name        text not null check (length(name) between 1 and 200),
  zone_id     bigint not null references grid_zones (id),
  created_by  bigint not null references users (id),
  description text not null default '',
  created_at  timestamptz not null default now(),
  unique (zone_id, name)
);

create table community_members (
  group_id    bigint not null references community_groups (id) on delete cascade,
  user_id     bigint not null references users (id),
  role        text not null default 'MEMBER' check (role in ('MEMBER', 'ADMIN')),
  joined_at   timestamptz not null default now(),
  left_at     timestamptz,
  primary key (group_id, user_id),
  check (left_at is null or left_at >= joined_at)
);
create index community_members_user_idx on community_members (user_id);

-- Price history: one row per zone, interval and minute bucket (OHLC, volume, supply, demand).
create table price_history (
  zone_id       bigint not null references grid_zones (id),
  interval_id   bigint not null references delivery_intervals (id),
  bucket_start  timestamptz not null,
  open_ticks    bigint not null,
  high_ticks    bigint not null,
  low_ticks     bigint not null,
  close_ticks   bigint not null,
  volume_wh     bigint not null check (volume_wh >= 0),
  supply_wh     bigint not null default 0 check (supply_wh >= 0),
  demand_wh     bigint not null default 0 check (demand_wh >= 0),
  trade_count   integer not null check (trade_count >= 0),
  primary key (zone_id, interval_id, bucket_start),
  check (low_ticks <= high_ticks and open_ticks between low_ticks and high_ticks and close_ticks between low_ticks and high_ticks)
);
create index price_history_zone_time_idx on price_history (zone_id, bucket_start desc);

create table price_alerts (
  id                  bigint generated always as identity primary key,
  user_id             bigint not null references users (id),
  zone_id             bigint not null references grid_zones (id),
  target_price_ticks  bigint not null,
  direction           text not null check (direction in ('ABOVE', 'BELOW')),
  is_active           boolean not null default true,
  triggered_at        timestamptz,
  created_at          timestamptz not null default now()
);
create index price_alerts_active_idx on price_alerts (zone_id, direction, target_price_ticks) where is_active;

create table notifications (
  id          bigint generated always as identity primary key,
  user_id     bigint not null references users (id),
  kind        text not null check (kind in ('TRADE_MATCHED', 'TRADE_SETTLED', 'TRADE_DISPUTED', 'PRICE_ALERT', 'GRID_ALERT', 'DEVICE_ALERT', 'CERTIFICATE_ISSUED', 'SYSTEM')),
  title       text not null check (length(title) between 1 and 200),
  body        text not null default '',
  data        jsonb not null default '{}',
  is_read     boolean not null default false,
  created_at  timestamptz not null default now()
);
create index notifications_user_idx on notifications (user_id, created_at desc);
create index notifications_unread_idx on notifications (user_id) where not is_read;

-- Every admin action: who, what, before/after, when, from where. Append-only.
create table audit_log (
  id              bigint generated always as identity primary key,
  actor_user_id   bigint references users (id),
  actor_key_id    text,
  action          text not null check (length(action) between 1 and 100),
  entity_type     text not null,
  entity_id       text,
  before          jsonb,
  after           jsonb,
  ip              inet,
  created_at      timestamptz not null default now()
);
create index audit_log_time_idx on audit_log (created_at desc);
create index audit_log_entity_idx on audit_log (entity_type, entity_id, created_at desc);
create index audit_log_actor_idx on audit_log (actor_user_id, created_at desc);

create table compliance_rules (
  id          bigint generated always as identity primary key,
  zone_id     bigint not null references grid_zones (id),
  rule        text not null check (rule in ('PRICE_BAND', 'ORDER_SIZE', 'MAX_OPEN_ORDERS', 'TICK', 'LOT', 'SELLER_FEASIBILITY', 'KYC_REQUIRED')),
  parameters  jsonb not null default '{}',
  is_active   boolean not null default true,
  created_by  bigint references users (id),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  unique (zone_id, rule)
);

-- Platform-wide settings, versioned by updated_at; admin changes are also in audit_log.
create table platform_config (
  key         text primary key check (key ~ '^[a-z][a-z0-9_.]{1,63}$'),
  value       jsonb not null,
  updated_by  bigint references users (id),
  updated_at  timestamptz not null default now()
);

-- Platform fee per zone (zone_id null = the platform default); the row in force is the latest
-- effective_from not after the trade.
create table fee_schedules (
  id                  bigint generated always as identity primary key,
  zone_id             bigint references grid_zones (id),
  fee_bps             integer not null default 0 check (fee_bps between 0 and 10000),
  fee_per_kwh_minor   bigint not null default 0 check (fee_per_kwh_minor >= 0),
  effective_from      timestamptz not null default now(),
  created_by          bigint references users (id),
  created_at          timestamptz not null default now()
);
create unique index fee_schedules_zone_from_key on fee_schedules (coalesce(zone_id, 0), effective_from);

create table tariff_plans (
  id                          bigint generated always as identity primary key,
  zone_id                     bigint references grid_zones (id),
  name                        text not null check (length(name) between 1 and 200),
  currency                    char(3) not null check (currency ~ '^[A-Z]{3}$'),
  billing_period              text not null default 'MONTHLY' check (billing_period in ('MONTHLY', 'QUARTERLY')),
  fixed_charge_minor          numeric(38, 0) not null default 0 check (fixed_charge_minor >= 0),
  tax_bps                     integer not null default 0 check (tax_bps between 0 and 10000),
  net_metering                boolean not null default false,
  export_credit_per_kwh_minor numeric(38, 6) not null default 0 check (export_credit_per_kwh_minor >= 0),
  valid_from                  date not null,
  valid_to                    date,
  created_at                  timestamptz not null default now(),
  check (valid_to is null or valid_to > valid_from)
);

-- Slabs: rate per kWh for monthly import between from_wh (inclusive) and to_wh (exclusive).
create table tariff_slabs (
  plan_id             bigint not null references tariff_plans (id) on delete cascade,
  from_wh             bigint not null check (from_wh >= 0),
  to_wh               bigint,
  rate_per_kwh_minor  numeric(38, 6) not null check (rate_per_kwh_minor >= 0),
  primary key (plan_id, from_wh),
  check (to_wh is null or to_wh > from_wh)
);

-- Time-of-use rates: days_mask bit 0 = Monday … bit 6 = Sunday; minutes after local midnight.
create table tariff_tou_rates (
  id                  bigint generated always as identity primary key,
  plan_id             bigint not null references tariff_plans (id) on delete cascade,
  name                text not null,
  days_mask           smallint not null check (days_mask between 1 and 127),
  start_minute        smallint not null check (start_minute between 0 and 1439),
  end_minute          smallint not null check (end_minute between 1 and 1440),
  rate_per_kwh_minor  numeric(38, 6) not null check (rate_per_kwh_minor >= 0),
  check (end_minute > start_minute)
);

create table bills (
  id                  bigint generated always as identity primary key,
  user_id             bigint not null references users (id),
  plan_id             bigint not null references tariff_plans (id),
  period_start        date not null,
  period_end          date not null,
  currency            char(3) not null,
  status              text not null default 'DRAFT' check (status in ('DRAFT', 'ISSUED', 'PAID', 'VOID')),
  grid_import_wh      bigint not null default 0 check (grid_import_wh >= 0),
  grid_export_wh      bigint not null default 0 check (grid_export_wh >= 0),
  p2p_bought_wh       bigint not null default 0 check (p2p_bought_wh >= 0),
  p2p_sold_wh         bigint not null default 0 check (p2p_sold_wh >= 0),
  energy_charge_minor numeric(38, 0) not null default 0,
  p2p_charge_minor    numeric(38, 0) not null default 0,
  export_credit_minor numeric(38, 0) not null default 0 check (export_credit_minor >= 0),
  fixed_charge_minor  numeric(38, 0) not null default 0 check (fixed_charge_minor >= 0),
  tax_minor           numeric(38, 0) not null default 0 check (tax_minor >= 0),
  total_minor         numeric(38, 0) not null,
  lines               jsonb not null default '[]',
  issued_at           timestamptz,
  created_at          timestamptz not null default now(),
  unique (user_id, period_start, period_end),
  check (period_end > period_start)
);
