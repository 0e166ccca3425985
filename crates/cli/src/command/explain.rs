//! `partnerdb policy explain POLICY --request JSON`: decide one request and
//! show every grant of the principal's roles, whether it matched and, if
//! not, what it needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use partnerdb_policy::batch::parse_line;

use crate::Outcome;
use crate::input::{load_compiled, read_source};

/// Explain the decision on one request.
///
/// The request is one object of the batch format (see `partnerdb authorize
/// --help`). Exit status: 0 when allowed, 1 when denied, 2 on bad input.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file
    policy: PathBuf,
    /// The request: inline JSON (starting with `{`), a file, or `-` for
    /// standard input
    #[arg(long, default_value = "-")]
    request: String,
    /// Print the explanation as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.policy == Path::new("-") && args.request == "-" {
        bail!("the policy and the request cannot both come from standard input");
    }
    let policy = load_compiled(&args.policy)?;
    let text = if args.request.trim_start().starts_with('{') {
        args.request.clone()
    } else {
        read_source(Path::new(&args.request))?.text().to_owned()
    };
    let (raw, kind, action) = parse_line(text.trim()).context("the request is not valid")?;
    let roles = policy.resolve_roles(raw.role_names());
    let request = raw.request(&roles, kind, action);
    let explanation = policy.explain(&request);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{explanation}");
    }
    Ok(if explanation.decision == "allow" {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
