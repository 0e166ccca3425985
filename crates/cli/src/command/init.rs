//! `partnerdb init`: a data directory with the database, the starter
//! policy and a first administrator whose token is printed once.

use std::sync::Arc;

use anyhow::Context;
use partnerdb_service::{BootstrapError, Clock, STARTER_POLICY, SystemClock, bootstrap};

use super::data::DataArgs;
use crate::Outcome;

/// Create a data directory: database, starter policy, first administrator,
/// and the audit checkpoint signing key.
///
/// The administrator's token is printed once, here; only its hash is
/// stored. It expires in a year: rotate it, and bind a second administrator
/// (the starter policy's `min_admins` is 2). The signing key file
/// (`DIR/audit-signing.key`, mode 0600) signs audit checkpoints; keep a copy
/// of its public key (printed) with the exported checkpoints.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Where to create the checkpoint signing key [default: DIR/audit-signing.key]
    #[arg(long, value_name = "PATH")]
    signing_key: Option<std::path::PathBuf>,
    /// The first administrator's display name
    #[arg(long, default_value = "admin")]
    admin_name: String,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        let db = args.data.open().await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let credential = match bootstrap(&db, STARTER_POLICY, &args.admin_name, &*clock).await {
            Ok(credential) => credential,
            Err(BootstrapError::AlreadyInitialised) => anyhow::bail!(
                "`{}` is already initialised; start it with `partnerdb serve --data {}`",
                super::data::redact(&args.data.url()),
                args.data.dir().display()
            ),
            Err(error) => return Err(error.into()),
        };
        if args.data.database_url.is_none() {
            let path = args.data.dir().join("starter.toml");
            std::fs::write(&path, STARTER_POLICY)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        let key_path = args
            .signing_key
            .clone()
            .unwrap_or_else(|| args.data.default_key_path());
        let key = super::data::create_key(&key_path)?;
        db.close().await;
        println!("initialised {}", super::data::redact(&args.data.url()));
        println!(
            "audit checkpoint signing key: {} (public key {})",
            key_path.display(),
            key.public().to_hex()
        );
        println!(
            "policy: the starter policy (a copy is in {}/starter.toml)",
            args.data.dir().display()
        );
        println!(
            "administrator: {} ({})",
            args.admin_name, credential.principal_id
        );
        println!(
            "token (shown once, expires {}):",
            credential.expires_at.as_deref().unwrap_or("never")
        );
        println!("\n    {}\n", credential.token);
        println!(
            "start the server: partnerdb serve --data {}",
            args.data.dir().display()
        );
        Ok(Outcome::Clean)
    })
}
