//! `partnerdb policy lint FILE`: the static findings of R12, each with its
//! severity, location and a fix hint; with `--usage`, also the findings
//! that need a deployment's bindings and usage counters.

use std::path::PathBuf;

use anyhow::Context;
use partnerdb_policy::diagnostic::Report;
use partnerdb_policy::lint::lint;
use partnerdb_policy::lint_usage::{UsageFacts, lint_usage};
use partnerdb_policy::{Severity, parse_policy};

use super::data::DataArgs;
use crate::Outcome;
use crate::input::{plural, read_source};

/// Lint a policy file.
///
/// Exit status: 0 when no finding is an error (or, with --deny-warnings, a
/// warning); 1 otherwise, or when the policy does not pass check; 2 when
/// the file cannot be read.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (`-` for standard input)
    file: PathBuf,
    /// Print the findings as JSON
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) on warnings too, not only on errors
    #[arg(long)]
    deny_warnings: bool,
    /// Also lint against a deployment's bindings and usage (from --data or
    /// --database-url): roles without principals, redundant bindings, too
    /// few administrators, dormant principals, unused roles and grants
    #[arg(long)]
    usage: bool,
    /// With --usage: what counts as unused (days without an allowed decision)
    #[arg(long, value_name = "DAYS", default_value_t = 90, requires = "usage",
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    unused_days: u32,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let source = read_source(&args.file)?;
    if !args.usage && args.data.dir.is_some() {
        anyhow::bail!("--data is read only with --usage");
    }
    let findings = match parse_policy(&source) {
        Ok(policy) => {
            let mut findings = lint(&policy);
            if args.usage {
                let facts = usage_facts(&args.data, args.unused_days)?;
                findings.extend(lint_usage(&policy, &facts));
            }
            findings
        }
        // A policy that does not check: its check errors are the findings.
        Err(diagnostics) => diagnostics,
    };
    let count = |severity| findings.iter().filter(|d| d.severity == severity).count();
    let (errors, warnings, infos) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    if args.json {
        let value = serde_json::json!({
            "file": source.name(),
            "errors": errors,
            "warnings": warnings,
            "infos": infos,
            "findings": findings.iter().map(|d| d.to_json(&source)).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!(
            "{}",
            Report {
                source: &source,
                diagnostics: &findings
            }
        );
        if !findings.is_empty() {
            println!();
        }
        println!(
            "{}: {errors} error{}, {warnings} warning{}, {infos} info",
            source.name(),
            plural(errors),
            plural(warnings)
        );
    }
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// Reads the principals, their bindings and the usage counters.
fn usage_facts(data: &DataArgs, unused_days: u32) -> anyhow::Result<UsageFacts> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        let db = data.open_existing().await?;
        let facts = partnerdb_service::trail::usage_facts(
            &db,
            jiff::Timestamp::now().as_second(),
            unused_days,
        )
        .await?;
        db.close().await;
        Ok(facts)
    })
}
