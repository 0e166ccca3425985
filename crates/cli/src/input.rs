//! Reading the command line's inputs: files or standard input (`-`), and
//! policies that must pass `check` before a command can use them.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use partnerdb_policy::diagnostic::Report;
use partnerdb_policy::{CompiledPolicy, Diagnostic, Policy, SourceFile, parse_policy};

/// Reads a whole file, or standard input for `-`.
pub fn read_source(path: &Path) -> anyhow::Result<SourceFile> {
    let name = path.display().to_string();
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{name}`"))?;
    }
    Ok(SourceFile::new(name, text))
}

/// Reads and checks a policy for a command that needs a valid one; an
/// invalid policy is printed with its errors and stops the command.
pub fn load_policy(path: &Path) -> anyhow::Result<(SourceFile, Policy)> {
    let source = read_source(path)?;
    match parse_policy(&source) {
        Ok(policy) => Ok((source, policy)),
        Err(diagnostics) => {
            eprint_report(&source, &diagnostics);
            bail!(
                "policy `{}` does not pass check ({} error{}); run `partnerdb policy check {}`",
                source.name(),
                diagnostics.len(),
                plural(diagnostics.len()),
                source.name()
            )
        }
    }
}

/// Prints findings about `source` to standard error.
pub fn eprint_report(source: &SourceFile, diagnostics: &[Diagnostic]) {
    eprint!(
        "{}",
        Report {
            source,
            diagnostics
        }
    );
}

/// Reads, checks and compiles a policy.
pub fn load_compiled(path: &Path) -> anyhow::Result<CompiledPolicy> {
    let (_, policy) = load_policy(path)?;
    Ok(CompiledPolicy::compile(policy))
}

/// `"s"` unless `n` is 1.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
