-- Ledger store: batch n+1 streams its transfers while batch n commits (ledger/store.ts).
--
-- Each batch's transaction takes the advisory lock (lock_class, batch) first thing. Batch n+1,
-- once its COPY is done and before any statement that reads or locks rows batch n may write,
-- calls ledger_await_batch(lock_class, n, xid of n): that blocks until n's transaction has ended
-- (the lock is released at commit or abort, after the commit record is flushed), then aborts
-- n+1 unless n committed. So commits stay in flush order, n+1 is never committed without n, and
-- the waiting happens inside PostgreSQL with a statement in flight: the client never leaves a
-- connection idle inside a transaction and never has to send ROLLBACK on one that may be gone.
create function ledger_await_batch(lock_class integer, batch integer, prev xid8) returns void
language plpgsql as $$
begin
  perform pg_advisory_xact_lock(lock_class, batch);
  if pg_xact_status(prev) is distinct from 'committed' then
    raise exception 'ledger batch % (transaction %) did not commit', batch, prev using errcode = 'KX001';
  end if;
end
$$;
