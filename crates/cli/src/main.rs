//! `partnerdb`: the server and the command line, one binary.
//!
//! Exit status, for every command: 0 when the command succeeded and found
//! nothing wrong; 1 when it ran and found something (an invalid policy, a
//! failing test case, a lint error, a difference, an invalid request line);
//! 2 when it could not do its job (bad usage, an unreadable file, a policy
//! that does not check for a command that needs one).

mod command;
mod input;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the C library's allocator: a server's requests make
/// many small allocations from several threads at once, where glibc's
/// arenas spend a third of a list request's time (and contend on a lock).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Commercial Partner Database: partners, contacts, contracts and
/// transactions, with every access decided by a role policy kept as code.
#[derive(Debug, Parser)]
#[command(name = "partnerdb", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: database, starter policy, first administrator
    Init(command::init::Args),
    /// Serve the HTTP API (`--demo` for demo data and a token per role)
    Serve(command::serve::Args),
    /// Verify, export or follow the audit trail
    #[command(subcommand)]
    Audit(command::audit::Command),
    /// Work with policy files: check, lint, diff, explain, test
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Decide a batch of requests (one JSON object a line) against a policy
    Authorize(command::authorize::Args),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check a policy file: syntax, schema, scopes and conditions
    Check(command::check::Args),
    /// Lint a policy file: separation of duties, redundancy, wildcards, lockout, high risk
    Lint(command::lint::Args),
    /// Compare two policy files: effective permissions gained and lost per role
    Diff(command::diff::Args),
    /// Explain the decision on one request: which grants matched, or why none did
    Explain(command::explain::Args),
    /// Run a file of test cases with expected decisions against a policy
    Test(command::test::Args),
    /// Propose a policy version to a running server (after check and lint)
    Propose(command::versions::ProposeArgs),
    /// Plan a proposed version: permission changes, lint, lockout, recorded decisions replayed
    Plan(command::versions::PlanArgs),
    /// Approve and activate a proposed version (another principal; policy:apply)
    Approve(command::versions::ApproveArgs),
    /// Reject a proposed version
    Reject(command::versions::VersionArgs),
    /// Propose an earlier version's text again (policy:rollback)
    Rollback(command::versions::VersionArgs),
    /// List the server's policy versions, newest first
    History(command::versions::HistoryArgs),
    /// Print one policy version with its text
    Show(command::versions::VersionArgs),
}

/// What a command reports back to `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong found (exit 0).
    Clean,
    /// The command ran and found something (exit 1).
    Findings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => command::init::run(args),
        Command::Serve(args) => command::serve::run(args),
        Command::Audit(command) => command::audit::run(command),
        Command::Policy(PolicyCommand::Check(args)) => command::check::run(args),
        Command::Policy(PolicyCommand::Lint(args)) => command::lint::run(args),
        Command::Policy(PolicyCommand::Diff(args)) => command::diff::run(args),
        Command::Policy(PolicyCommand::Explain(args)) => command::explain::run(args),
        Command::Policy(PolicyCommand::Test(args)) => command::test::run(args),
        Command::Policy(PolicyCommand::Propose(args)) => command::versions::propose(args),
        Command::Policy(PolicyCommand::Plan(args)) => command::versions::plan(args),
        Command::Policy(PolicyCommand::Approve(args)) => command::versions::approve(args),
        Command::Policy(PolicyCommand::Reject(args)) => command::versions::decide(args, "reject"),
        Command::Policy(PolicyCommand::Rollback(args)) => {
            command::versions::decide(args, "rollback")
        }
        Command::Policy(PolicyCommand::History(args)) => command::versions::history(args),
        Command::Policy(PolicyCommand::Show(args)) => command::versions::show(args),
        Command::Authorize(args) => command::authorize::run(args),
    };
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
