//! The data directory and database options shared by `init` and `serve`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use partnerdb_store::{Db, DbOptions};

/// Where the data lives.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// The data directory: SQLite database, starter policy, demo tokens
    /// [default: partnerdb-data, or partnerdb-demo with --demo]
    #[arg(long = "data", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Use this database instead of the SQLite file in the data directory,
    /// e.g. postgres://user@host/db (never put a password here in shared
    /// shells: use PGPASSWORD or a .pgpass file)
    #[arg(long, value_name = "URL", env = "PARTNERDB_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DataArgs {
    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("partnerdb-data"))
    }

    /// The SQLite file in the data directory.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir().join("partnerdb.db")
    }

    /// The database URL to open.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.sqlite_path().display()),
        }
    }

    /// The checkpoint signing key's default place.
    pub fn default_key_path(&self) -> PathBuf {
        self.dir().join("audit-signing.key")
    }

    /// Opens an existing database (it must exist) to read it: not migrated,
    /// and refused unless its schema is this build's.
    pub async fn open_existing(&self) -> anyhow::Result<Db> {
        if self.database_url.is_none() && !self.sqlite_path().exists() {
            anyhow::bail!(
                "no database at `{}`: give --data DIR or --database-url URL",
                self.sqlite_path().display()
            );
        }
        let db = Db::connect(&self.url(), &DbOptions::default())
            .await
            .with_context(|| format!("cannot open the database ({})", redact(&self.url())))?;
        // The commands that open an existing database only read it: they
        // do not migrate it (a newer CLI would upgrade a shared database
        // under older servers), and refuse a schema they do not match.
        let state = db
            .schema_state()
            .await
            .context("cannot read the database's schema version")?;
        if state.pending > 0 {
            anyhow::bail!(
                "the database's schema is older than this partnerdb's ({} migration(s) not applied): start `partnerdb serve` of this version on it once, or use the version that made it",
                state.pending
            );
        }
        if state.unknown > 0 {
            anyhow::bail!(
                "the database's schema is newer than this partnerdb's ({} migration(s) it does not know): use the version that made it",
                state.unknown
            );
        }
        Ok(db)
    }

    /// Opens (creating the directory for SQLite) and migrates.
    pub async fn open(&self) -> anyhow::Result<Db> {
        if self.database_url.is_none() {
            let dir = self.dir();
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create data directory `{}`", dir.display()))?;
            restrict_dir(&dir)?;
        }
        let db = Db::connect(&self.url(), &DbOptions::default())
            .await
            .with_context(|| format!("cannot open the database ({})", redact(&self.url())))?;
        db.migrate().await.context("cannot migrate the database")?;
        Ok(db)
    }
}

/// Reads a checkpoint signing key (64 hex digits).
pub fn read_key(path: &Path) -> anyhow::Result<partnerdb_audit::CheckpointKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the checkpoint signing key `{}`",
            path.display()
        )
    })?;
    partnerdb_audit::CheckpointKey::from_hex(&text).with_context(|| {
        format!(
            "`{}` is not a checkpoint signing key (64 hex digits)",
            path.display()
        )
    })
}

/// Creates a checkpoint signing key file (mode 0600) unless one exists;
/// returns the key.
pub fn create_key(path: &Path) -> anyhow::Result<partnerdb_audit::CheckpointKey> {
    if path.exists() {
        return read_key(path);
    }
    let mut seed = [0u8; 32];
    getrandom(&mut seed);
    let key = partnerdb_audit::CheckpointKey::from_seed(seed);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    write_private(path, &format!("{}\n", key.to_hex()))?;
    Ok(key)
}

fn getrandom(buf: &mut [u8]) {
    use rand::RngCore as _;
    rand::rng().fill_bytes(buf);
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Makes a directory readable by its owner only.
pub fn restrict_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict `{}` to its owner", dir.display()))?;
    }
    Ok(())
}

/// Writes a file readable by its owner only (mode 0600), replacing it.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
