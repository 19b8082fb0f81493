-- Roll-ups per meter are now written in the same statement as the readings (a meter is in one
-- write at a time, so its buckets never contend). The outbox carries only what is shared between
-- meters: per zone and local hour (user_id null), and per community member, zone and local hour
-- (user_id set; written only for users with a community membership in the zone). Rows written
-- before this migration (meter_id set) are still folded the old way.
alter table reading_rollup_outbox alter column meter_id drop not null;
alter table reading_rollup_outbox add column zone_id bigint;
alter table reading_rollup_outbox add column user_id bigint;
alter table reading_rollup_outbox add constraint reading_rollup_outbox_shape_check
  check (meter_id is not null or zone_id is not null);
