//! `partnerdb serve`: the HTTP API, on the data directory's SQLite database
//! or on PostgreSQL; `--demo` first fills a fresh database with demo data
//! and prints a token for every role.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use partnerdb_server::AppState;
use partnerdb_service::demo::{self, Sizes};
use partnerdb_service::{Clock, OpenError, STARTER_POLICY, Service, SystemClock, bootstrap};

use super::data::{DataArgs, redact, write_private};
use crate::Outcome;

/// Serve the API (binds 127.0.0.1:8080 unless told otherwise).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Start at once on a fresh database with demo data (200 partners,
    /// 2,000 contacts, 500 contracts, 20,000 transactions) and print a token
    /// for every role; also written to DIR/demo-tokens.json (mode 0600)
    #[arg(long)]
    demo: bool,
    /// Multiply the demo data (50: 10,000 partners, 1,000,000 transactions)
    #[arg(long, default_value_t = 1, requires = "demo", value_parser = clap::value_parser!(u16).range(1..=500))]
    demo_scale: u16,
    /// Let the demo listen on a non-loopback address
    #[arg(long)]
    allow_remote: bool,
    /// The audit checkpoint signing key [default: DIR/audit-signing.key]
    #[arg(long, value_name = "PATH")]
    signing_key: Option<std::path::PathBuf>,
    /// Sign a checkpoint after this many audit events…
    #[arg(long, default_value_t = 10_000)]
    checkpoint_every: i64,
    /// …or this many seconds after the last one
    #[arg(long, default_value_t = 10)]
    checkpoint_seconds: u64,
    /// What the answer to a read or a denial waits for: its audit event
    /// committed (the default; SQLite: synced within 10 ms; a crash of the
    /// server loses nothing, a crash of the operating system or a power
    /// cut can lose the last moments' read and deny events, whose answers
    /// were sent), or on disk (synced) as well. Changes are always on disk
    /// before they are answered
    #[arg(long, value_enum, default_value = "commit", value_name = "WHEN")]
    read_event_durability: ReadEventDurability,
    /// Log format
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReadEventDurability {
    /// The event is committed before the answer is sent; synced behind it
    Commit,
    /// The event is synced to disk before the answer is sent
    Disk,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn run(mut args: Args) -> anyhow::Result<Outcome> {
    init_logging(args.log_format);
    if args.demo {
        if !args.listen.ip().is_loopback() && !args.allow_remote {
            bail!(
                "the demo prints its tokens and refuses to listen on {} (not a loopback address): pass --allow-remote if you mean it",
                args.listen
            );
        }
        if args.data.dir.is_none() {
            args.data.dir = Some("partnerdb-demo".into());
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(serve(args))?;
    Ok(Outcome::Clean)
}

/// Removes a previous demo's SQLite files; refuses a directory that holds
/// anything but a demo.
fn reset_demo_dir(dir: &Path) -> anyhow::Result<()> {
    let db = dir.join("partnerdb.db");
    if !db.exists() {
        return Ok(());
    }
    if !dir.join("demo-tokens.json").exists() {
        bail!(
            "`{}` holds a database that is not a demo; give --demo another --data directory",
            dir.display()
        );
    }
    for name in [
        "partnerdb.db",
        "partnerdb.db-wal",
        "partnerdb.db-shm",
        "demo-tokens.json",
    ] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove `{}`", path.display()))?;
        }
    }
    Ok(())
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut demo_tokens = None;
    if args.demo && args.data.database_url.is_none() {
        reset_demo_dir(&args.data.dir())?;
    }
    let db = args.data.open().await?;
    if args.demo {
        let admin = match bootstrap(&db, STARTER_POLICY, "first admin", &*clock).await {
            Ok(admin) => admin,
            Err(partnerdb_service::BootstrapError::AlreadyInitialised) => {
                bail!(
                    "the demo needs an empty database: {} is already initialised",
                    redact(&args.data.url())
                )
            }
            Err(error) => return Err(error.into()),
        };
        let policy = partnerdb_service::compile(STARTER_POLICY)?;
        let sizes = Sizes::scaled(usize::from(args.demo_scale));
        eprintln!(
            "seeding demo data: {} partners, {} contacts, {} contracts, {} transactions",
            sizes.partners,
            sizes.partners * sizes.contacts_per_partner,
            sizes.contracts,
            sizes.transactions
        );
        let mut principals = demo::seed(&db, &policy, sizes, clock.now(), |what, done, total| {
            if done == total {
                eprintln!("  {what}: {total}");
            }
        })
        .await
        .context("cannot seed the demo data")?;
        principals.insert(
            0,
            demo::DemoPrincipal {
                role: "admin".into(),
                token: admin.token,
                principal_id: admin.principal_id,
                partner_id: None,
                name: "first admin".into(),
            },
        );
        if args.data.database_url.is_none() {
            let path = args.data.dir().join("demo-tokens.json");
            write_private(&path, &serde_json::to_string_pretty(&principals)?)?;
        }
        demo_tokens = Some(principals);
    }
    let key_path = args
        .signing_key
        .clone()
        .unwrap_or_else(|| args.data.default_key_path());
    let key = if args.demo {
        super::data::create_key(&key_path)?
    } else {
        super::data::read_key(&key_path).context(
            "audit checkpoints need the signing key made by `partnerdb init`; give its path with --signing-key",
        )?
    };
    let config = partnerdb_service::audit::AuditConfig {
        key: Some(Arc::new(key)),
        checkpoint_every: args.checkpoint_every.max(1),
        checkpoint_interval: std::time::Duration::from_secs(args.checkpoint_seconds.max(1)),
        read_durability: match args.read_event_durability {
            ReadEventDurability::Disk => partnerdb_service::audit::ReadDurability::Disk,
            ReadEventDurability::Commit => partnerdb_service::audit::ReadDurability::Commit,
        },
        // The load benchmark's "without the trail" figures, in the same
        // build: only a benchmark build reads this variable.
        #[cfg(feature = "bench-bare")]
        bench_unaudited: std::env::var("PARTNERDB_BENCH_UNAUDITED").is_ok_and(|v| v == "1"),
        ..partnerdb_service::audit::AuditConfig::default()
    };
    #[cfg(feature = "bench-bare")]
    if config.bench_unaudited {
        tracing::warn!(
            "PARTNERDB_BENCH_UNAUDITED=1: read and deny events are NOT written; benchmarks only"
        );
    }
    tracing::info!(
        "read and deny events are answered once {} (--read-event-durability {})",
        match config.read_durability {
            partnerdb_service::audit::ReadDurability::Commit =>
                "committed, and synced to disk within 10 ms",
            partnerdb_service::audit::ReadDurability::Disk => "committed and synced to disk",
        },
        config.read_durability.name()
    );
    let durability = config.read_durability;
    let service = match Service::open(db, clock, config).await {
        Ok(service) => service,
        Err(OpenError::NotInitialised) => bail!(
            "{} is not initialised: run `partnerdb init --data {}` first, or try `partnerdb serve --demo`",
            redact(&args.data.url()),
            args.data.dir().display()
        ),
        Err(error) => return Err(error.into()),
    };
    service
        .record_start(durability)
        .await
        .context("cannot record the server's start in the audit trail")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let url = format!("http://{address}");
    if let Some(principals) = &demo_tokens {
        println!(
            "\npartnerdb demo at {url}  (policy: starter, database: {})\n",
            redact(&args.data.url())
        );
        println!("{:<16} {:<40} token", "role", "principal");
        for p in principals {
            let who = match &p.partner_id {
                Some(partner) => format!("{} (partner {partner})", p.name),
                None => p.name.clone(),
            };
            println!("{:<16} {:<40} {}", p.role, who, p.token);
        }
        if args.data.database_url.is_none() {
            println!(
                "\nthe same, for scripts: {}/demo-tokens.json (mode 0600)",
                args.data.dir().display()
            );
        }
        println!("\ntry:  curl -H \"Authorization: Bearer <token>\" {url}/v1/me");
        println!("      curl -H \"Authorization: Bearer <token>\" '{url}/v1/partners?limit=5'");
        println!("      {url}/openapi.json\n");
    } else {
        println!("partnerdb listening on {url}");
    }
    tracing::info!(%address, "listening");
    partnerdb_server::serve(
        listener,
        AppState {
            service: Arc::new(service),
        },
        shutdown_signal(),
    )
    .await
    .context("the server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
