-- kwx schema v1, part 3: meter readings and device telemetry (ingest).
--
-- Units: energy in integer Wh (bigint), power in integer W. Telemetry values are physical
-- measurements (voltage, temperature, state of charge, power) sent with their unit; they are stored
-- as double precision next to that unit: they are never summed into balances or bills (billing
-- reads meter_readings), a sensor's precision is far below double's 15 significant digits, and
-- numeric would cost space and CPU on the hottest table for no gain.
--
-- The hot tables (meter_readings, device_telemetry) are range-partitioned by day (UTC) and carry
-- no foreign keys: the ingest worker only writes rows for meters/devices it has just looked up,
-- and meters and devices are never deleted (their status goes INACTIVE). A foreign key would cost
-- an index probe per row at hundreds of thousands of rows per second.

-- One row per meter and interval. The primary key is what makes a resend idempotent.
create table meter_readings (
  meter_id          bigint not null,
  interval_start    timestamptz not null,
  interval_minutes  smallint not null check (interval_minutes in (1, 5, 15, 30, 60)),
  -- export register (energy the site delivered to the grid) and import register (taken from it)
  production_wh     bigint not null check (production_wh >= 0),
  consumption_wh    bigint not null check (consumption_wh >= 0),
  -- ESPI qualityOfReading: 0 valid, 8/9 estimated, 10 questionable, 14 raw, … (0–19)
  quality           smallint not null default 0 check (quality between 0 and 19),
  received_at       timestamptz not null,
  primary key (meter_id, interval_start)
) partition by range (interval_start);

-- A resend of a stored interval with different values: kept aside for review, never applied.
create table meter_reading_conflicts (
  id                      bigint generated always as identity primary key,
  meter_id                bigint not null references smart_meters (id),
  interval_start          timestamptz not null,
  interval_minutes        smallint not null,
  production_wh           bigint not null,
  consumption_wh          bigint not null,
  quality                 smallint not null,
  stored_interval_minutes smallint not null,
  stored_production_wh    bigint not null,
  stored_consumption_wh   bigint not null,
  stored_quality          smallint not null,
  status                  text not null default 'OPEN' check (status in ('OPEN', 'ACCEPTED', 'DISMISSED')),
  first_received_at       timestamptz not null,
  last_received_at        timestamptz not null,
  received_count          integer not null default 1 check (received_count > 0),
  reviewed_by             bigint references users (id),
  reviewed_at             timestamptz,
  review_note             text
);
-- the same conflicting value sent again bumps received_count instead of piling up rows
create unique index meter_reading_conflicts_value_key
  on meter_reading_conflicts (meter_id, interval_start, interval_minutes, production_wh, consumption_wh, quality);
create index meter_reading_conflicts_open_idx on meter_reading_conflicts (meter_id, interval_start) where status = 'OPEN';

-- Missing intervals detected when a reading arrives after a hole. Late readings that land in the
-- hole count down missing_intervals; filled_at is set when none is missing any more.
create table meter_reading_gaps (
  meter_id          bigint not null references smart_meters (id),
  gap_start         timestamptz not null,
  gap_end           timestamptz not null,
  interval_minutes  smallint not null,
  missing_intervals integer not null check (missing_intervals >= 0),
  detected_at       timestamptz not null,
  filled_at         timestamptz,
  primary key (meter_id, gap_start),
  check (gap_end > gap_start)
);
create index meter_reading_gaps_open_idx on meter_reading_gaps (meter_id, gap_end) where filled_at is null;

-- Latest stored reading per meter (spike and gap checks start from it; silence alerts read
-- last_received_at).
create table meter_latest (
  meter_id          bigint primary key references smart_meters (id),
  interval_start    timestamptz not null,
  interval_minutes  smallint not null,
  production_wh     bigint not null,
  consumption_wh    bigint not null,
  quality           smallint not null,
  last_received_at  timestamptz not null
);

-- Device telemetry: one value of one metric at one time.
create table device_telemetry (
  device_id    bigint not null,
  metric       text not null check (metric ~ '^[a-z][a-z0-9_.]{0,63}$'),
  ts           timestamptz not null,
  value        double precision not null check (value = value and value <> 'Infinity' and value <> '-Infinity'),
  unit         text not null check (length(unit) between 1 and 16),
  received_at  timestamptz not null,
  primary key (device_id, metric, ts)
) partition by range (ts);

-- Latest value per device and metric (the dashboard snapshot).
create table device_latest (
  device_id    bigint not null references devices (id),
  metric       text not null,
  ts           timestamptz not null,
  value        double precision not null,
  unit         text not null,
  received_at  timestamptz not null,
  primary key (device_id, metric)
);

-- Roll-ups of accepted readings: per meter, zone and community; per hour, day and month. Day and
-- month buckets start at local midnight in the zone's timezone; hour buckets at the local hour.
create table reading_rollups (
  scope           text not null check (scope in ('METER', 'ZONE', 'COMMUNITY')),
  scope_id        bigint not null,
  period          text not null check (period in ('HOUR', 'DAY', 'MONTH')),
  bucket_start    timestamptz not null,
  production_wh   bigint not null default 0 check (production_wh >= 0),
  consumption_wh  bigint not null default 0 check (consumption_wh >= 0),
  reading_count   bigint not null default 0 check (reading_count >= 0),
  updated_at      timestamptz not null default now(),
  primary key (scope, scope_id, period, bucket_start)
);

-- Written in the same statement as the readings it summarises (so it is exactly as durable), then
-- folded into reading_rollups and deleted by one roll-up applier. batch_seq lets the writing
-- process measure roll-up lag.
create table reading_rollup_outbox (
  id              bigint generated always as identity primary key,
  meter_id        bigint not null,
  hour_start      timestamptz not null,
  production_wh   bigint not null,
  consumption_wh  bigint not null,
  reading_count   integer not null,
  batch_seq       bigint not null default 0,
  enqueued_at     timestamptz not null default clock_timestamp()
);

-- Alert rules on telemetry metrics and on readings. metric for meters: production_wh,
-- consumption_wh (per reading) or no_data (meter silent for duration_s; threshold unused).
create table alert_rules (
  id            bigint generated always as identity primary key,
  user_id       bigint not null references users (id),
  name          text not null check (length(name) between 1 and 200),
  subject_kind  text not null check (subject_kind in ('DEVICE', 'METER')),
  device_id     bigint references devices (id),
  meter_id      bigint references smart_meters (id),
  device_kind   text,
  metric        text not null check (metric ~ '^[a-z][a-z0-9_.]{0,63}$'),
  operator      text not null check (operator in ('lt', 'lte', 'gt', 'gte', 'eq', 'ne')),
  threshold     double precision not null,
  unit          text not null default '',
  duration_s    integer not null default 0 check (duration_s between 0 and 2592000),
  cooldown_s    integer not null default 0 check (cooldown_s between 0 and 2592000),
  severity      text not null check (severity in ('INFO', 'WARNING', 'CRITICAL')),
  is_active     boolean not null default true,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  check (subject_kind = 'DEVICE' or (device_id is null and device_kind is null)),
  check (subject_kind = 'METER' or meter_id is null)
);
create index alert_rules_user_idx on alert_rules (user_id) where is_active;

create table alerts (
  id               bigint generated always as identity primary key,
  rule_id          bigint not null references alert_rules (id),
  user_id          bigint not null references users (id),
  subject_kind     text not null check (subject_kind in ('DEVICE', 'METER')),
  subject_id       bigint not null,
  status           text not null check (status in ('FIRING', 'ACKNOWLEDGED', 'RESOLVED')),
  severity         text not null,
  value            double precision,
  message          text not null,
  -- data time when the condition started to hold, and when it had held for duration_s
  started_at       timestamptz not null,
  fired_at         timestamptz not null,
  acknowledged_at  timestamptz,
  acknowledged_by  bigint references users (id),
  resolved_at      timestamptz,
  -- null with resolved_at set = resolved automatically (the condition cleared)
  resolved_by      bigint references users (id),
  created_at       timestamptz not null default now(),
  check ((status = 'RESOLVED') = (resolved_at is not null)),
  check (status <> 'ACKNOWLEDGED' or acknowledged_at is not null)
);
-- at most one open alert per rule and subject
create unique index alerts_open_key on alerts (rule_id, subject_kind, subject_id) where status in ('FIRING', 'ACKNOWLEDGED');
create index alerts_user_idx on alerts (user_id, fired_at desc);

-- Evaluation state per rule and subject, written on transitions only.
create table alert_rule_state (
  rule_id       bigint not null references alert_rules (id),
  subject_kind  text not null,
  subject_id    bigint not null,
  breach_since  timestamptz,
  last_fired_at timestamptz,
  last_ts       timestamptz,
  primary key (rule_id, subject_kind, subject_id)
);

-- Creates the daily partitions of meter_readings or device_telemetry that cover [p_from, p_to]
-- (UTC days) and do not exist yet; returns how many it created. Safe to call concurrently.
create function ingest_create_partitions(p_parent text, p_from timestamptz, p_to timestamptz) returns integer
language plpgsql as $$
declare
  d     date := (p_from at time zone 'UTC')::date;
  last  date := (p_to at time zone 'UTC')::date;
  part  text;
  n     integer := 0;
begin
  if p_parent not in ('meter_readings', 'device_telemetry') then
    raise exception 'ingest_create_partitions: unknown table %', p_parent;
  end if;
  if last - d > 800 then
    raise exception 'ingest_create_partitions: % days requested, at most 800', last - d;
  end if;
  perform pg_advisory_xact_lock(hashtext('kwx.ingest.partitions'));
  while d <= last loop
    part := p_parent || '_p' || to_char(d, 'YYYYMMDD');
    if to_regclass(part) is null then
      execute format('create table %I partition of %I for values from (%L) to (%L)',
        part, p_parent, (d::timestamp at time zone 'UTC'), ((d + 1)::timestamp at time zone 'UTC'));
      n := n + 1;
    end if;
    d := d + 1;
  end loop;
  return n;
end $$;

-- Partitions ahead of time for both tables (the ingest service calls it at start and hourly; a
-- pg_cron job may call it too): from yesterday to p_days_ahead days from now.
create procedure ingest_create_partitions_ahead(p_days_ahead integer default 7)
language plpgsql as $$
begin
  perform ingest_create_partitions('meter_readings', now() - interval '1 day', now() + make_interval(days => p_days_ahead));
  perform ingest_create_partitions('device_telemetry', now() - interval '1 day', now() + make_interval(days => p_days_ahead));
end $$;

call ingest_create_partitions_ahead(7);
