//! `partnerdb policy test FILE`: run a file of cases with expected
//! decisions against a policy; failures print an expected/actual diff.

use std::path::{Path, PathBuf};

use anyhow::bail;
use partnerdb_policy::testcase::{TestReport, parse_tests, run_tests};

use crate::Outcome;
use crate::input::{eprint_report, load_compiled, read_source};

/// Run policy test cases.
///
/// The test file names its policy (`policy = "starter.toml"`, relative to
/// the test file) unless --policy is given. Exit status: 0 when every case
/// passes, 1 when one fails, 2 when a file cannot be read or does not parse.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The test file
    file: PathBuf,
    /// The policy to test (overrides the file's `policy`)
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Print the results as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let source = read_source(&args.file)?;
    let tests = match parse_tests(&source) {
        Ok(tests) => tests,
        Err(diagnostics) => {
            eprint_report(&source, &diagnostics);
            bail!("test file `{}` is not valid", source.name());
        }
    };
    let policy_path = match (&args.policy, &tests.policy) {
        (Some(path), _) => path.clone(),
        (None, Some(relative)) => args.file.parent().unwrap_or(Path::new(".")).join(relative),
        (None, None) => bail!(
            "test file `{}` names no policy: add `policy = \"…\"` or pass --policy",
            source.name()
        ),
    };
    let policy = load_compiled(&policy_path)?;
    let results = run_tests(&policy, &tests);
    let failed = results.iter().filter(|r| !r.passed).count();
    if args.json {
        let cases: Vec<_> = results
            .iter()
            .map(|r| {
                let at = source.location(r.span.start);
                serde_json::json!({
                    "name": r.name,
                    "passed": r.passed,
                    "line": at.line,
                    "column": at.column,
                    "mismatches": r.mismatches.iter().map(|m| serde_json::json!({
                        "what": m.what, "expected": m.expected, "actual": m.actual,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let value = serde_json::json!({
            "file": source.name(),
            "policy": policy_path.display().to_string(),
            "passed": results.len() - failed,
            "failed": failed,
            "cases": cases,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!(
            "{}",
            TestReport {
                source: &source,
                results: &results
            }
        );
    }
    Ok(if failed == 0 {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
