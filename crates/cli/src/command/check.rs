//! `partnerdb policy check FILE`: parse and validate a policy file, reporting
//! every error with its file, line and column.

use std::path::PathBuf;

use partnerdb_policy::parse_policy;

use crate::Outcome;
use crate::input::{eprint_report, plural, read_source};

/// Check a policy file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (`-` for standard input)
    file: PathBuf,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let source = read_source(&args.file)?;
    let result = parse_policy(&source);
    if args.json {
        let value = match &result {
            Ok(policy) => serde_json::json!({
                "file": source.name(),
                "ok": true,
                "policy": policy.name,
                "roles": policy.roles.len(),
                "grants": policy.roles.iter().map(|r| r.grants.len()).sum::<usize>(),
                "diagnostics": [],
            }),
            Err(diagnostics) => serde_json::json!({
                "file": source.name(),
                "ok": false,
                "diagnostics": diagnostics.iter().map(|d| d.to_json(&source)).collect::<Vec<_>>(),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &result {
            Ok(policy) => {
                let grants: usize = policy.roles.iter().map(|r| r.grants.len()).sum();
                println!(
                    "{}: ok: policy \"{}\", {} role{}, {grants} grant{}, {} separation-of-duties rule{}, {} high-risk permission pattern{}",
                    source.name(),
                    policy.name,
                    policy.roles.len(),
                    plural(policy.roles.len()),
                    plural(grants),
                    policy.separation_of_duties.len(),
                    plural(policy.separation_of_duties.len()),
                    policy.high_risk.len(),
                    plural(policy.high_risk.len()),
                );
            }
            Err(diagnostics) => {
                eprint_report(&source, diagnostics);
                eprintln!(
                    "\n{}: {} error{}",
                    source.name(),
                    diagnostics.len(),
                    plural(diagnostics.len())
                );
            }
        }
    }
    Ok(if result.is_ok() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
