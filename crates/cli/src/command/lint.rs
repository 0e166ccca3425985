//! `partnerdb policy lint FILE`: the static findings of R12, each with its
//! severity, location and a fix hint; with `--usage`, also the findings
//! that need a deployment's bindings and usage counters.

use std::path::PathBuf;

use anyhow::Context;
use partnerdb_policy::diagnostic::Report;
use partnerdb_policy::lint::lint;
use partnerdb_policy::lint_usage::{PrincipalFacts, UsageFacts, lint_usage};
use partnerdb_policy::{Severity, parse_policy};
use partnerdb_store::{audit, principals};

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
        let seconds = |at: &str| -> anyhow::Result<i64> {
            Ok(at
                .parse::<jiff::Timestamp>()
                .with_context(|| format!("the database holds a malformed time `{at}`"))?
                .as_second())
        };
        let counters = audit::usage(&db, None, None)
            .await
            .context("cannot read the usage counters")?;
        let mut facts = UsageFacts {
            now: jiff::Timestamp::now().as_second(),
            unused_days,
            ..UsageFacts::default()
        };
        let mut principal_last = std::collections::BTreeMap::new();
        for counter in counters {
            let Some(at) = counter.last_at.as_deref() else {
                continue;
            };
            let at = seconds(at)?;
            match counter.kind.as_str() {
                "principal" => drop(principal_last.insert(counter.name, at)),
                "role" => drop(facts.role_last_used.insert(counter.name, at)),
                "grant" => drop(facts.grant_last_used.insert(counter.name, at)),
                _ => {}
            }
        }
        facts.history_start = audit::first_event_at(&db)
            .await
            .context("cannot read the audit trail")?
            .as_deref()
            .map(seconds)
            .transpose()?;
        let mut after = None;
        loop {
            let page = principals::list(&db, after.as_deref(), 500)
                .await
                .context("cannot read the principals")?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for principal in page {
                facts.principals.push(PrincipalFacts {
                    last_used: principal_last.get(&principal.id).copied(),
                    created_at: seconds(&principal.created_at)?,
                    id: principal.id,
                    name: principal.name,
                    roles: principal.roles,
                });
            }
        }
        db.close().await;
        Ok(facts)
    })
}
