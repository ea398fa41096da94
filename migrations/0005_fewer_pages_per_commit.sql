-- Every commit writes each B-tree page it touches to the WAL: a grant or a
-- release wrote six. These go, for three or four:
-- - `leases` keyed by its id (WITHOUT ROWID), so the id needs no index of
--   its own beside the table;
-- - `events` without AUTOINCREMENT (and its sqlite_sequence row): `seq`
--   still grows with every event, and is reused only if every event has
--   been pruned;
-- - `events_at`: `at` is read only by /v1/events and the hourly prune,
--   which scan a table that pruning keeps small.
CREATE TABLE leases_by_id (
    id                  TEXT    PRIMARY KEY NOT NULL,
    port                INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    name                TEXT,
    project             TEXT,
    owner_pid           INTEGER NOT NULL,
    -- Identity of the owner: clock ticks after boot (stat field 22) and the boot.
    owner_start_ticks   INTEGER NOT NULL,
    owner_start_time    REAL    NOT NULL,
    owner_uid           INTEGER NOT NULL,
    -- The owner's session: untagged listeners in it are suspects once it dies.
    owner_sid           INTEGER NOT NULL,
    boot_id             TEXT    NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN ('active', 'ended')),
    end_reason          TEXT    CHECK (end_reason IN ('released', 'expired', 'owner_died', 'reaped')),
    -- Unix milliseconds; the API renders them as RFC 3339.
    granted_at          INTEGER NOT NULL,
    -- The grant in clock ticks after boot, the clock of process start times:
    -- only processes started at or after it can be the lease's orphans.
    granted_ticks       INTEGER NOT NULL,
    expires_at          INTEGER,
    ended_at            INTEGER,
    -- The command `portctl run` started for the lease (0003).
    command_pid         INTEGER,
    command_start_ticks INTEGER,
    -- `release --keep` (0003).
    kept_ticks          INTEGER,
    CHECK ((state = 'active') = (end_reason IS NULL AND ended_at IS NULL))
) WITHOUT ROWID;

INSERT INTO leases_by_id (id, port, name, project, owner_pid, owner_start_ticks,
        owner_start_time, owner_uid, owner_sid, boot_id, state, end_reason, granted_at,
        granted_ticks, expires_at, ended_at, command_pid, command_start_ticks, kept_ticks)
    SELECT id, port, name, project, owner_pid, owner_start_ticks, owner_start_time,
        owner_uid, owner_sid, boot_id, state, end_reason, granted_at, granted_ticks,
        expires_at, ended_at, command_pid, command_start_ticks, kept_ticks
    FROM leases;
DROP TABLE leases;
ALTER TABLE leases_by_id RENAME TO leases;

-- The rule that matters most: at most one active lease per port.
CREATE UNIQUE INDEX leases_one_active_per_port ON leases (port) WHERE state = 'active';
CREATE INDEX leases_ended_at ON leases (ended_at) WHERE state = 'ended';

CREATE TABLE events_seq (
    seq      INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    lease_id TEXT,
    port     INTEGER,
    pid      INTEGER,
    detail   TEXT
);

INSERT INTO events_seq (seq, at, kind, lease_id, port, pid, detail)
    SELECT seq, at, kind, lease_id, port, pid, detail FROM events;
DROP TABLE events;
ALTER TABLE events_seq RENAME TO events;
