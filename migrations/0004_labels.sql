-- Project labels: LABEL in the proxy's host names (NAME.LABEL.localhost).
-- A project gets its label once, with its first named lease, and keeps it;
-- one database serves one user, so UNIQUE makes labels unique per user.
CREATE TABLE labels (
    project  TEXT    PRIMARY KEY NOT NULL,
    label    TEXT    NOT NULL UNIQUE
                     CHECK (length(label) BETWEEN 1 AND 63 AND label NOT GLOB '*[^a-z0-9-]*'),
    -- Unix milliseconds.
    given_at INTEGER NOT NULL
) WITHOUT ROWID;
