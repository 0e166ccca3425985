//! `partnerdb policy lint FILE`: the static findings of R12, each with its
//! severity, location and a fix hint.

use std::path::PathBuf;

use partnerdb_policy::diagnostic::Report;
use partnerdb_policy::lint::lint;
use partnerdb_policy::{Severity, parse_policy};

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
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let source = read_source(&args.file)?;
    let findings = match parse_policy(&source) {
        Ok(policy) => lint(&policy),
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
