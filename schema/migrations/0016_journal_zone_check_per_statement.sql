-- engine_journal.zone_id -> grid_zones: the same guarantee, checked once per statement instead of
-- once per row.
--
-- The row-level foreign key of 0001 made PostgreSQL run an RI lookup for every journal row: ~6 µs
-- of server CPU per row measured by `npm run bench -- pipeline` (8.1 µs per row with the key,
-- ~2.0 without), about a third of what one durable order costs on this 2-core machine. The journal
-- is written in COPY batches of up to thousands of rows that nearly always name one zone, so the
-- check moves to an AFTER INSERT statement trigger over the statement's transition table (COPY
-- fires it too): one lookup per distinct zone per batch. Deleting a zone that has journal rows is
-- refused by a row trigger on grid_zones (a rare operator action; grid_zones.id is an identity
-- column, never updated). Both raise SQLSTATE 23503 (foreign_key_violation), as the key did.
alter table engine_journal drop constraint engine_journal_zone_id_fkey;

create function engine_journal_zones_exist() returns trigger
language plpgsql as $$
declare
  z bigint;
begin
  -- FOR KEY SHARE, as the foreign key did: a concurrent delete of the zone waits for this
  -- transaction (and then sees its rows), or this one waits for the delete and finds no zone.
  for z in select distinct zone_id from new_rows loop
    perform 1 from grid_zones where id = z for key share;
    if not found then
      raise exception 'engine_journal: zone % does not exist in grid_zones', z
        using errcode = 'foreign_key_violation', table = 'engine_journal', column = 'zone_id';
    end if;
  end loop;
  return null;
end $$;

create trigger engine_journal_zones_exist
  after insert on engine_journal
  referencing new table as new_rows
  for each statement execute function engine_journal_zones_exist();

create function grid_zones_keep_journaled() returns trigger
language plpgsql as $$
begin
  if exists (select 1 from engine_journal j where j.zone_id = old.id) then
    raise exception 'grid_zones: zone % has journal rows and cannot be deleted', old.id
      using errcode = 'foreign_key_violation', table = 'grid_zones';
  end if;
  return old;
end $$;

create trigger grid_zones_keep_journaled
  before delete on grid_zones
  for each row
  execute function grid_zones_keep_journaled();
