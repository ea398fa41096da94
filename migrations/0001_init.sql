-- Leases: one row per grant, kept after it ends as history.
CREATE TABLE leases (
    id                TEXT    PRIMARY KEY NOT NULL,
    port              INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    name              TEXT,
    project           TEXT,
    owner_pid         INTEGER NOT NULL,
    -- Identity of the owner: clock ticks after boot (stat field 22) and the boot.
    owner_start_ticks INTEGER NOT NULL,
    owner_start_time  REAL    NOT NULL,
    owner_uid         INTEGER NOT NULL,
    -- The owner's session: untagged listeners in it are suspects once it dies.
    owner_sid         INTEGER NOT NULL,
    boot_id           TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('active', 'ended')),
    end_reason        TEXT    CHECK (end_reason IN ('released', 'expired', 'owner_died', 'reaped')),
    -- Unix milliseconds; the API renders them as RFC 3339.
    granted_at        INTEGER NOT NULL,
    -- The grant in clock ticks after boot, the clock of process start times:
    -- only processes started at or after it can be the lease's orphans.
    granted_ticks     INTEGER NOT NULL,
    expires_at        INTEGER,
    ended_at          INTEGER,
    CHECK ((state = 'active') = (end_reason IS NULL AND ended_at IS NULL))
);

-- The rule that matters most: at most one active lease per port.
CREATE UNIQUE INDEX leases_one_active_per_port ON leases (port) WHERE state = 'active';
CREATE INDEX leases_active_owner ON leases (owner_pid, owner_start_ticks) WHERE state = 'active';
CREATE INDEX leases_ended_at ON leases (ended_at) WHERE state = 'ended';

-- Names remember their port per project across leases and restarts.
CREATE TABLE names (
    project   TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    port      INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    last_used INTEGER NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;

CREATE INDEX names_port ON names (port);

-- Append-only history: granted, released, expired, owner_died, reaped, ...
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    lease_id TEXT,
    port     INTEGER,
    pid      INTEGER,
    detail   TEXT
);

CREATE INDEX events_at ON events (at);
