-- Engine runtime: how far each read-model projection has applied each zone's journal.
-- A projection is rebuilt by deleting its rows and its offsets and replaying the journal.
create table engine_projection_offsets (
  projection  text not null check (projection ~ '^[a-z][a-z0-9_]{1,63}$'),
  zone_id     bigint not null references grid_zones (id),
  seq         bigint not null check (seq >= 0),
  updated_at  timestamptz not null default now(),
  primary key (projection, zone_id)
);
