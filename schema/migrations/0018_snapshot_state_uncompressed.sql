-- Engine snapshots are binary since 2026-12-03 (engine/core/snapshot.ts): tens of MB for a deep
-- book, float64 columns and UTF-16 text that pglz barely shrinks. Stored out of line without
-- compression, so a checkpoint does not spend PostgreSQL CPU (next to the journal's backend)
-- trying to compress them. Existing rows keep their storage until rewritten.
alter table engine_snapshots alter column state set storage external;
