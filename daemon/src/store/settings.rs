//! How every connection to the database is set up, in one place: the
//! readers and the migration (sqlx) and the writer and its checkpointer
//! (rusqlite) run the same PRAGMA statements in the same order.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::SqliteConnectOptions;

/// How long a connection waits for a lock another connection holds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every connection's settings. WAL with `synchronous=NORMAL` survives
/// `kill -9` of the daemon (not a power loss). The page cache is 256 KiB
/// (negative: KiB): the database stays small, and SQLite's default 2 MB
/// per connection was most of an idle daemon's heap.
const PRAGMAS: &[(&str, &str)] = &[
    ("journal_mode", "wal"),
    ("synchronous", "normal"),
    ("cache_size", "-256"),
    ("foreign_keys", "on"),
];

/// The write connection's settings besides [`PRAGMAS`]: when the WAL starts
/// over after a burst, its file shrinks to 4 MiB, about the 1,000 frames
/// after which it is checkpointed.
const WRITER_PRAGMAS: &[(&str, &str)] = &[("journal_size_limit", "4194304")];

/// Options for the sqlx connections (readers, migration), creating the
/// database if it is missing.
pub fn sqlx_options(path: &Path) -> SqliteConnectOptions {
    PRAGMAS.iter().fold(
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT),
        |options, (key, value)| options.pragma(*key, *value),
    )
}

/// Opens a rusqlite connection for writing (the writer, the checkpointer).
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(&statements(PRAGMAS.iter().chain(WRITER_PRAGMAS)))?;
    Ok(conn)
}

/// `PRAGMA key = value;` for each setting, as sqlx writes them.
fn statements<'a>(pragmas: impl Iterator<Item = &'a (&'a str, &'a str)>) -> String {
    pragmas
        .map(|(key, value)| format!("PRAGMA {key} = {value};"))
        .collect()
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;
    use sqlx::{Connection as _, Row, SqliteConnection};

    use super::*;

    /// What a connection answers to each query, with the settings above.
    const EXPECTED: &[(&str, &str)] = &[
        ("PRAGMA journal_mode", "wal"),
        ("PRAGMA synchronous", "1"),
        ("PRAGMA cache_size", "-256"),
        ("PRAGMA foreign_keys", "1"),
        ("PRAGMA busy_timeout", "5000"),
    ];

    #[tokio::test]
    async fn readers_and_the_writer_run_with_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portd.db");
        let mut reader = SqliteConnection::connect_with(&sqlx_options(&path))
            .await
            .unwrap();
        let writer = open_writer(&path).unwrap();
        for (query, expected) in EXPECTED {
            let row = sqlx::query(*query).fetch_one(&mut reader).await.unwrap();
            let read = row
                .try_get::<i64, _>(0)
                .map(|n| n.to_string())
                .or_else(|_| row.try_get::<String, _>(0))
                .unwrap();
            let written = match writer.query_row(query, [], |row| row.get(0)).unwrap() {
                Value::Integer(n) => n.to_string(),
                Value::Text(text) => text,
                other => format!("{other:?}"),
            };
            assert_eq!(read, *expected, "{query} on a reader");
            assert_eq!(written, *expected, "{query} on the writer");
        }
        let limit: i64 = writer
            .query_row("PRAGMA journal_size_limit", [], |row| row.get(0))
            .unwrap();
        assert_eq!(limit, 4 << 20);
    }
}
