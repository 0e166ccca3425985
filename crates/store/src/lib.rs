//! partnerdb's storage: the only crate that contains SQL.
//!
//! One [`Db`] handle over embedded SQLite (the default: WAL, foreign keys
//! on, one writer connection and a pool of readers) or PostgreSQL, with
//! versioned migrations (`migrations/`, written once for both). Record
//! tables are described by [`schema::Table`]; row scopes from the policy
//! engine become `WHERE` clauses in [`records::list`].
//!
//! **Architecture invariants:** statements bind every value and take their
//! identifiers from the schema tables only; this crate makes no access
//! decision (the service does) and knows nothing of HTTP.

pub mod audit;
pub mod changes;
pub mod elevations;
pub mod metrics;
pub mod policies;
pub mod principals;
pub mod records;
pub mod schema;
pub mod sql;
mod sqlite;
pub mod workflows;

#[cfg(test)]
pub(crate) mod scratch {
    //! A directory of its own for a test's database file, removed on drop.

    use std::path::PathBuf;

    /// The directory; `file` names the database in it.
    pub(crate) struct Scratch(PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "partnerdb-{name}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            std::fs::create_dir_all(&dir).expect("scratch directory");
            Scratch(dir)
        }

        /// The database file's path.
        pub(crate) fn file(&self) -> PathBuf {
            self.0.join("db.sqlite")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub use sql::{Db, DbOptions, Dialect, Durable, Row, SchemaState, Sql, Tx, Value};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one we can open.
    #[error("invalid database URL: {0}")]
    Url(String),
    /// A unique key already exists.
    #[error("a record with this key already exists")]
    Conflict,
    /// A referenced record does not exist, or a record still has dependents.
    #[error("the change would break a reference between records")]
    Reference,
    /// The database failed.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The embedded database failed.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// A statement's thread stopped before it answered (the runtime is
    /// shutting down).
    #[error("database call interrupted: {0}")]
    Interrupted(String),
    /// A commit could not be made durable (its WAL could not be synced);
    /// nothing committed since is known to be on disk.
    #[error("the database cannot be synced to disk: {0}")]
    Sync(String),
    /// A write refused before it began: an earlier sync failed, and
    /// nothing is written after that (what would be committed could not
    /// be said to be kept or not). Nothing was changed.
    #[error("writes are refused since the database could not be synced to disk: {0}")]
    SyncFailedBefore(String),
    /// Stored data partnerdb cannot have written (the trail's head at the
    /// last seq there is, say): refused rather than wrapped or panicked on.
    #[error("the stored data is not as partnerdb wrote it: {0}")]
    Corrupt(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &error {
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => return StoreError::Conflict,
                sqlx::error::ErrorKind::ForeignKeyViolation => return StoreError::Reference,
                _ => {}
            }
        }
        StoreError::Database(error)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        use rusqlite::ffi;
        if let rusqlite::Error::SqliteFailure(failure, _) = &error {
            match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    return StoreError::Conflict;
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::Reference,
                _ => {}
            }
        }
        StoreError::Sqlite(error)
    }
}

/// The current time as stored: RFC 3339 in UTC with microseconds, fixed
/// width, so that stored times sort as text.
pub fn now() -> String {
    format_time(jiff::Timestamp::now())
}

/// A time as stored.
pub fn format_time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A new record or principal id: a UUIDv7 (time-ordered, so new rows land
/// at the end of the id index).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_times_have_a_fixed_width() {
        let a = super::format_time(jiff::Timestamp::from_second(0).unwrap());
        assert_eq!(a, "1970-01-01T00:00:00.000000Z");
        assert_eq!(super::now().len(), a.len());
    }
}
