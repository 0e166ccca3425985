//! `partnerdb audit verify | export | checkpoints | tail`: check and read
//! the tamper-evident trail from the database directly.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use partnerdb_audit::{Checkpoint, PublicKey};
use partnerdb_service::audit::{VerifyError, verify};
use partnerdb_store::audit as store;

use super::data::{DataArgs, read_key};
use crate::Outcome;

/// Verify, export or follow the audit trail.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify the hash chain and its checkpoints; reports the first broken
    /// link and exits 1 when anything is broken
    Verify(VerifyArgs),
    /// Export every event (JSON lines or CSV) to standard output or a file
    Export(ExportArgs),
    /// Export the signed checkpoints (JSON lines), to keep elsewhere
    Checkpoints(CheckpointArgs),
    /// Print the latest events, and new ones as they come with --follow
    Tail(TailArgs),
}

/// `audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Checkpoints exported earlier (JSON lines) to check the chain against
    #[arg(long, value_name = "FILE")]
    checkpoints: Option<PathBuf>,
    /// The public key checkpoints must be signed with (64 hex digits)
    #[arg(long, value_name = "HEX", conflicts_with = "signing_key")]
    public_key: Option<String>,
    /// Take the public key from this signing key file [default: DIR/audit-signing.key if it exists]
    #[arg(long, value_name = "PATH")]
    signing_key: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

/// `audit export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Write here instead of standard output
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `audit checkpoints`.
#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    data: DataArgs,
}

/// `audit tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    data: DataArgs,
    /// How many of the latest events
    #[arg(long, short = 'n', default_value_t = 20)]
    lines: usize,
    /// Keep printing new events
    #[arg(long, short)]
    follow: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One JSON object a line.
    Jsonl,
    /// CSV with a header line (a value beginning with `=`, `+`, `-` or `@`
    /// is written after an apostrophe, so that no spreadsheet runs it).
    Csv,
}

pub fn run(command: Command) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Verify(args) => run_verify(args).await,
            Command::Export(args) => run_export(args).await,
            Command::Checkpoints(args) => run_checkpoints(args).await,
            Command::Tail(args) => run_tail(args).await,
        }
    })
}

fn load_checkpoints(path: &PathBuf) -> anyhow::Result<Vec<Checkpoint>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|error| {
                anyhow::anyhow!(
                    "{}:{}:{}: not a checkpoint: {}",
                    path.display(),
                    i + 1,
                    error.column(),
                    without_position(&error)
                )
            })
        })
        .collect()
}

/// A JSON error's message without the " at line L column C" serde_json
/// ends it with (each line of a checkpoints file is parsed alone, so its
/// line is always 1: the file's line and column are given in front).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

async fn run_verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let db = args.data.open_existing().await?;
    let key = match (&args.public_key, &args.signing_key) {
        (Some(hex), _) => {
            Some(PublicKey::from_hex(hex).context("--public-key must be 64 hex digits")?)
        }
        (None, Some(path)) => Some(read_key(path)?.public()),
        (None, None) => {
            let default = args.data.default_key_path();
            if args.data.database_url.is_none() && default.exists() {
                Some(read_key(&default)?.public())
            } else {
                None
            }
        }
    };
    let given = match &args.checkpoints {
        Some(path) => load_checkpoints(path)?,
        None => Vec::new(),
    };
    let (total, _) = store::head(&db).await?;
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0))
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} events ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = verify(&db, given, key.as_ref(), |seq| {
        bar.set_position(u64::try_from(seq).unwrap_or(0))
    })
    .await;
    bar.finish_and_clear();
    let key_note = if key.is_some() {
        "against the given public key"
    } else {
        "against the public key stored with each checkpoint (give --public-key to check them against a key you keep)"
    };
    match result {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "events": report.events, "head": report.head, "checkpoints": report.checkpoints})
                );
            } else {
                println!(
                    "ok: {} events chained, {} checkpoints verified {key_note}; head {}",
                    report.events, report.checkpoints, report.head
                );
            }
            Ok(Outcome::Clean)
        }
        Err(VerifyError::Broken(broken)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": false,
                        "broken": broken.to_string(),
                        "kind": broken.kind(),
                        "seq": broken.seq(),
                    })
                );
            } else {
                println!("BROKEN: {broken}");
            }
            Ok(Outcome::Findings)
        }
        Err(VerifyError::Store(error)) if args.json => {
            // Still one JSON object on standard output, as --json says,
            // and the exit code of an error (2).
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": error.to_string()})
            );
            Err(error.into())
        }
        Err(VerifyError::Store(error)) => Err(error.into()),
    }
}

async fn run_export(args: ExportArgs) -> anyhow::Result<Outcome> {
    let db = args.data.open_existing().await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write `{}`", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if let Format::Csv = args.format {
        writeln!(
            out,
            "seq,at,kind,principal_id,action,resource_type,resource_id,partner_id,decision,policy_version,detail,prev_hash,hash"
        )?;
    }
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = store::events_after(&db, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.event.seq;
        for stored in &page {
            match args.format {
                Format::Jsonl => {
                    serde_json::to_writer(&mut out, stored)?;
                    writeln!(out)?;
                }
                Format::Csv => {
                    let e = &stored.event;
                    let seq = e.seq.to_string();
                    let fields = [
                        Some(seq.as_str()),
                        Some(e.at.as_str()),
                        Some(e.kind.as_str()),
                        e.principal_id.as_deref(),
                        Some(e.action.as_str()),
                        Some(e.resource_type.as_str()),
                        e.resource_id.as_deref(),
                        e.partner_id.as_deref(),
                        Some(e.decision.as_str()),
                        Some(e.policy_version.as_str()),
                        Some(e.detail.as_str()),
                        Some(stored.prev_hash.as_str()),
                        Some(stored.hash.as_str()),
                    ];
                    let line: Vec<String> = fields.into_iter().map(csv_field).collect();
                    writeln!(out, "{}", line.join(","))?;
                }
            }
            count += 1;
        }
    }
    out.flush()?;
    if args.output.is_some() {
        eprintln!("exported {count} events");
    }
    Ok(Outcome::Clean)
}

/// A CSV field (RFC 4180 quoting). As PostgreSQL's `COPY … CSV` writes
/// them: a missing value (no principal, resource id or partner) is an
/// empty field, an empty text a quoted one (`""`), so the two stay apart.
/// A text a spreadsheet would take for a formula (beginning with `=`,
/// `+`, `-`, `@`, a tab or a carriage return) is written after an
/// apostrophe, as spreadsheets themselves escape one, quoted or not: the
/// JSON lines keep every value exactly.
fn csv_field(text: Option<&str>) -> String {
    let Some(text) = text else {
        return String::new();
    };
    let text: std::borrow::Cow<'_, str> = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    };
    if text.is_empty() || text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.into_owned()
    }
}

async fn run_checkpoints(args: CheckpointArgs) -> anyhow::Result<Outcome> {
    let db = args.data.open_existing().await?;
    let mut out = std::io::stdout().lock();
    for checkpoint in store::checkpoints(&db).await? {
        serde_json::to_writer(&mut out, &checkpoint)?;
        writeln!(out)?;
    }
    Ok(Outcome::Clean)
}

async fn run_tail(args: TailArgs) -> anyhow::Result<Outcome> {
    if args.lines > 10_000 {
        bail!("--lines is at most 10000");
    }
    let db = args.data.open_existing().await?;
    let (head, _) = store::head(&db).await?;
    let mut after = head.saturating_sub(args.lines as i64).max(0);
    loop {
        let page = store::events_after(&db, after, 1_000).await?;
        for stored in &page {
            let e = &stored.event;
            println!(
                "{:>8} {} {:<9} {:<5} {:<8} {}{} by {}",
                e.seq,
                e.at,
                e.kind,
                e.decision,
                e.action,
                e.resource_type,
                e.resource_id
                    .as_deref()
                    .map(|id| format!(" {id}"))
                    .unwrap_or_default(),
                e.principal_id.as_deref().unwrap_or("system"),
            );
            after = e.seq;
        }
        // Without --follow, up to the head seen at the start (the last
        // --lines events may take several pages).
        if !args.follow && (page.is_empty() || after >= head) {
            return Ok(Outcome::Clean);
        }
        if page.is_empty() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_keep_missing_and_empty_apart_and_quote_what_needs_it() {
        assert_eq!(csv_field(None), "");
        assert_eq!(csv_field(Some("")), "\"\"");
        assert_eq!(csv_field(Some("plain")), "plain");
        assert_eq!(csv_field(Some("a,b")), "\"a,b\"");
        assert_eq!(csv_field(Some("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(Some("two\nlines")), "\"two\nlines\"");
    }

    #[test]
    fn a_bad_checkpoint_line_is_named_by_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kept.jsonl");
        let good = r#"{"seq":1,"hash":"ab","at":"2026-01-01T00:00:00.000000Z","signature":"cd","public_key":"ef"}"#;
        std::fs::write(&path, format!("{good}\n\n{good}\n{{\"seq\": x}}\n")).unwrap();
        let error = super::load_checkpoints(&path).unwrap_err().to_string();
        let expected = format!("{}:4:9: not a checkpoint: expected value", path.display());
        assert_eq!(error, expected);
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(super::load_checkpoints(&path).unwrap().len(), 1);
    }

    #[test]
    fn csv_fields_a_spreadsheet_would_run_begin_with_an_apostrophe() {
        assert_eq!(csv_field(Some("=1+1")), "'=1+1");
        assert_eq!(csv_field(Some("+1")), "'+1");
        assert_eq!(csv_field(Some("-1")), "'-1");
        assert_eq!(csv_field(Some("@SUM(A1)")), "'@SUM(A1)");
        assert_eq!(csv_field(Some("\tx")), "'\tx");
        assert_eq!(
            csv_field(Some("=HYPERLINK(\"https://x.example/\",\"x\")")),
            "\"'=HYPERLINK(\"\"https://x.example/\"\",\"\"x\"\")\""
        );
        assert_eq!(csv_field(Some("\rx")), "\"'\rx\"");
        assert_eq!(csv_field(Some("a=b")), "a=b");
    }
}
