-- engine_journal LIST-partitioned by zone_id, one partition per zone: the zone check of 0016
-- without a trigger on the journal's write path.
--
-- 0016 checked "every journal row names an existing zone" with an AFTER ... FOR EACH STATEMENT
-- trigger over a transition table, which materialises every row of every COPY: ~2 µs of
-- PostgreSQL CPU per journal row (bench: raw 4,096-row COPYs at ~2.9 µs/row without it, ~4.6–6.2
-- with it). Here a zone's journal rows live in the zone's own partition, created (attached) when
-- the zone is inserted into grid_zones; a row for a zone that does not exist has no partition and
-- lands in the default partition, which refuses every row (a BEFORE INSERT trigger raising 23503
-- foreign_key_violation, as the key and 0016 did, and CHECK (false) under it, 23514, should
-- triggers be disabled). Routing a row to its partition costs ~0.2 µs (measured: 3.1–4.3 µs/row).
--
-- Deleting a zone: refused (23503) while its partition holds rows; otherwise its partition goes
-- with it. The delete first takes a SHARE lock on engine_journal: it waits for a journal COPY in
-- flight (which may hold the zone's first rows) and holds new ones back until it commits.
-- grid_zones.id cannot change (it names the partition).
--
-- Creating a zone attaches its partition (ALTER TABLE ... ATTACH PARTITION takes SHARE UPDATE
-- EXCLUSIVE on engine_journal, which does not wait for the journal's COPYs; CREATE TABLE ...
-- PARTITION OF would take ACCESS EXCLUSIVE and stall the journal).
--
-- Every reader is unchanged: same name, columns and primary key (zone_id, seq); a query naming
-- one zone reads one partition.

-- 0016's statement check goes (the partitions take its place).
drop trigger engine_journal_zones_exist on engine_journal;
drop function engine_journal_zones_exist();

alter table engine_journal rename to engine_journal_before_0017;
alter table engine_journal_before_0017 rename constraint engine_journal_pkey to engine_journal_before_0017_pkey;
alter table engine_journal_before_0017 rename constraint engine_journal_seq_check to engine_journal_before_0017_seq_check;

create table engine_journal (
  zone_id     bigint not null,
  seq         bigint not null check (seq > 0),
  kind        smallint not null,
  payload     bytea not null,
  ts          timestamptz not null,
  primary key (zone_id, seq)
) partition by list (zone_id);

-- Rows of a zone with no partition (no such zone) come here and are refused.
create table engine_journal_no_zone partition of engine_journal (
  constraint engine_journal_no_zone_refused check (false)
) default;

create function engine_journal_no_zone() returns trigger
language plpgsql as $$
begin
  raise exception 'engine_journal: zone % does not exist in grid_zones', new.zone_id
    using errcode = 'foreign_key_violation', table = 'engine_journal', column = 'zone_id';
end $$;

create trigger engine_journal_no_zone
  before insert on engine_journal_no_zone
  for each row execute function engine_journal_no_zone();

-- A zone's partition: an empty table like the journal, attached for the zone's id.
-- SECURITY DEFINER (as the migrations' owner, with the search_path of this migration): a role that
-- may insert or delete zones but does not own engine_journal can still attach or drop a partition.
create function engine_journal_add_zone_partition(z bigint) returns void
language plpgsql security definer set search_path from current as $$
declare
  p text := 'engine_journal_z' || z;
begin
  execute format('create table %I (like engine_journal including all)', p);
  execute format('alter table engine_journal attach partition %I for values in (%s)', p, z);
end $$;

create function grid_zones_add_journal_partition() returns trigger
language plpgsql as $$
begin
  perform engine_journal_add_zone_partition(new.id);
  return null;
end $$;

create trigger grid_zones_add_journal_partition
  after insert on grid_zones
  for each row execute function grid_zones_add_journal_partition();

-- Replaces 0016's function (its trigger, before delete on grid_zones, stays).
create or replace function grid_zones_keep_journaled() returns trigger
language plpgsql security definer set search_path from current as $$
declare
  p text := 'engine_journal_z' || old.id;
begin
  -- Waits for a journal COPY in flight and holds back new ones until this transaction ends, so
  -- the rows checked below are all the zone will ever have.
  lock table engine_journal in share mode;
  if exists (select 1 from engine_journal j where j.zone_id = old.id) then
    raise exception 'grid_zones: zone % has journal rows and cannot be deleted', old.id
      using errcode = 'foreign_key_violation', table = 'grid_zones';
  end if;
  if to_regclass(quote_ident(p)) is not null then
    execute format('drop table %I', p);
  end if;
  return old;
end $$;

create function grid_zones_keep_id() returns trigger
language plpgsql as $$
begin
  if new.id <> old.id then
    raise exception 'grid_zones: the id of zone % cannot change (it names the zone''s journal partition)', old.id
      using errcode = 'foreign_key_violation', table = 'grid_zones';
  end if;
  return new;
end $$;

create trigger grid_zones_keep_id
  before update of id on grid_zones
  for each row execute function grid_zones_keep_id();

-- A partition for every zone, then the rows (a row for a zone that does not exist would fail
-- here, as it could not exist under 0016 or the key before it).
select engine_journal_add_zone_partition(id) from grid_zones order by id;
insert into engine_journal (zone_id, seq, kind, payload, ts)
  select zone_id, seq, kind, payload, ts from engine_journal_before_0017;
drop table engine_journal_before_0017;
