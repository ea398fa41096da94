-- Active leases are looked up by owner in memory, never in SQLite; the index
-- cost every commit a page write (one WAL frame) and served no query.
DROP INDEX leases_active_owner;
