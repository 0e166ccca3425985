//! `partnerdb policy diff OLD NEW`: per role, the effective permissions
//! gained and lost, and the settings, high-risk list and
//! separation-of-duties rules that changed.

use std::path::PathBuf;

use partnerdb_policy::diff::diff;

use crate::Outcome;
use crate::input::load_policy;

/// Compare two policy files.
///
/// Exit status: 0 when they grant and require the same, 1 when they differ
/// (like diff(1)), 2 when either cannot be read or does not pass check.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The current policy
    old: PathBuf,
    /// The candidate policy
    new: PathBuf,
    /// Print the difference as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let (_, old) = load_policy(&args.old)?;
    let (_, new) = load_policy(&args.new)?;
    let difference = diff(&old, &new);
    if args.json {
        let mut value = serde_json::to_value(&difference)?;
        value["identical"] = serde_json::Value::Bool(difference.is_empty());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{difference}");
    }
    Ok(if difference.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
