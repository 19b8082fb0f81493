-- The zone/community roll-up outbox in array form: one row per readings group and (zone, community
-- candidate), its local hours and their sums as parallel arrays, instead of one row per (zone,
-- hour). A 10,000-reading group used to insert ~500 outbox rows (each a heap tuple, an identity
-- value and a primary-key entry, deleted again by the applier: ~1.3 s of PostgreSQL CPU per
-- million readings); now it inserts one or two. Rows of the earlier shapes (meter_id set, or
-- zone_id with a scalar hour_start) are still folded by the applier.
--
-- hours_s: local hour starts as epoch seconds; reading_count: readings summarised by the row (for
-- an array row, the sum of hours_reading_count; the applier weights roll-up lag by it).
alter table reading_rollup_outbox alter column hour_start drop not null;
alter table reading_rollup_outbox alter column production_wh drop not null;
alter table reading_rollup_outbox alter column consumption_wh drop not null;
alter table reading_rollup_outbox add column hours_s bigint[];
alter table reading_rollup_outbox add column hours_production_wh bigint[];
alter table reading_rollup_outbox add column hours_consumption_wh bigint[];
alter table reading_rollup_outbox add column hours_reading_count integer[];
-- a group's arrays are a few KiB: stored out of line uncompressed (compressing them costs more
-- CPU than the bytes it saves for a row that lives half a second)
alter table reading_rollup_outbox alter column hours_s set storage external;
alter table reading_rollup_outbox alter column hours_production_wh set storage external;
alter table reading_rollup_outbox alter column hours_consumption_wh set storage external;
alter table reading_rollup_outbox alter column hours_reading_count set storage external;
alter table reading_rollup_outbox add constraint reading_rollup_outbox_form_check check (
  case when hours_s is null then
    hour_start is not null and production_wh is not null and consumption_wh is not null
    and hours_production_wh is null and hours_consumption_wh is null and hours_reading_count is null
  else
    zone_id is not null and meter_id is null and hour_start is null and production_wh is null and consumption_wh is null
    and array_ndims(hours_s) = 1
    and cardinality(hours_production_wh) = cardinality(hours_s)
    and cardinality(hours_consumption_wh) = cardinality(hours_s)
    and cardinality(hours_reading_count) = cardinality(hours_s)
  end);
