//! `partnerdb authorize --policy FILE --requests FILE.jsonl`: decide one
//! request a line, answering one decision a line, in order.
//!
//! The input is cut into chunks of whole lines that worker threads decide in
//! parallel; chunks are dealt to workers in turn and their answers collected
//! in the same turn, so the output keeps the input's order without a
//! reordering buffer.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use anyhow::{Context, bail};
use partnerdb_policy::CompiledPolicy;
use partnerdb_policy::batch::{BatchDecider, write_error};

use crate::Outcome;
use crate::input::load_compiled;

/// Bytes read per chunk (a chunk is then cut at its last line break).
const CHUNK_BYTES: usize = 1 << 20;

/// Decide a batch of requests against a policy.
///
/// Reads one JSON request a line (see PRODUCT.md, "Batch decisions") and
/// writes one decision a line, in order. A line that is not a valid request
/// gets `{"error": "..."}` in its place; the exit status is then 1.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (`-` for standard input)
    #[arg(long)]
    policy: PathBuf,
    /// The requests, one JSON object a line (`-` for standard input)
    #[arg(long)]
    requests: PathBuf,
    /// Worker threads (default: one per core)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

struct Chunk {
    bytes: Vec<u8>,
    first_line: u64,
}

struct Answer {
    bytes: Vec<u8>,
    errors: u64,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let stdin = Path::new("-");
    if args.policy == stdin && args.requests == stdin {
        bail!("--policy and --requests cannot both be `-` (standard input)");
    }
    let policy = load_compiled(&args.policy)?;
    let input: Box<dyn Read + Send> = if args.requests == stdin {
        Box::new(io::stdin())
    } else {
        let file = std::fs::File::open(&args.requests)
            .with_context(|| format!("cannot read `{}`", args.requests.display()))?;
        Box::new(file)
    };
    let threads = args.threads.map_or_else(
        || thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let errors = decide_stream(&policy, input, io::stdout(), threads)?;
    Ok(if errors == 0 {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// Decides every line of `input` into `output`; returns how many lines were
/// not valid requests.
pub fn decide_stream(
    policy: &CompiledPolicy,
    input: impl Read,
    mut output: impl Write + Send,
    threads: usize,
) -> anyhow::Result<u64> {
    thread::scope(|scope| {
        let mut to_workers: Vec<SyncSender<Chunk>> = Vec::with_capacity(threads);
        let mut from_workers: Vec<Receiver<Answer>> = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(2);
            let (answer_tx, answer_rx) = sync_channel::<Answer>(2);
            scope.spawn(move || worker(policy, &chunk_rx, &answer_tx));
            to_workers.push(chunk_tx);
            from_workers.push(answer_rx);
        }
        let writer = scope.spawn(move || -> io::Result<u64> {
            let mut errors = 0;
            for turn in 0.. {
                let Ok(answer) = from_workers[turn % from_workers.len()].recv() else {
                    break;
                };
                errors += answer.errors;
                output.write_all(&answer.bytes)?;
            }
            output.flush()?;
            Ok(errors)
        });
        let read = read_chunks(input, |turn, chunk| {
            // A worker only stops early if the writer has gone, which the
            // writer's own result reports below.
            to_workers[turn % to_workers.len()].send(chunk).is_ok()
        });
        drop(to_workers);
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the output thread failed"))?;
        read.context("cannot read the requests")?;
        written.context("cannot write the decisions")
    })
}

fn worker(policy: &CompiledPolicy, chunks: &Receiver<Chunk>, answers: &SyncSender<Answer>) {
    let mut decider = BatchDecider::new(policy);
    while let Ok(chunk) = chunks.recv() {
        let mut bytes = Vec::with_capacity(chunk.bytes.len() / 2);
        let mut errors = 0;
        let mut body = chunk.bytes.as_slice();
        if body.last() == Some(&b'\n') {
            body = &body[..body.len() - 1];
        }
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
        for (offset, end) in ends.enumerate() {
            let line = &body[start..end];
            start = end + 1;
            let number = chunk.first_line + offset as u64;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let problem = match std::str::from_utf8(line) {
                Ok(text) if text.trim().is_empty() => Some("empty line".to_owned()),
                Ok(text) => decider
                    .decide_line(text, &mut bytes)
                    .err()
                    .map(|error| error.to_string()),
                Err(_) => Some("not valid UTF-8".to_owned()),
            };
            if let Some(problem) = problem {
                write_error(&format!("line {number}: {problem}"), &mut bytes);
                errors += 1;
            }
        }
        if answers.send(Answer { bytes, errors }).is_err() {
            return;
        }
    }
}

/// Reads `input` in chunks of whole lines, handing each with the number of
/// its first line to `deliver` until it returns false.
fn read_chunks(
    mut input: impl Read,
    mut deliver: impl FnMut(usize, Chunk) -> bool,
) -> io::Result<()> {
    let mut carry: Vec<u8> = Vec::new();
    let mut next_line: u64 = 1;
    let mut turn = 0;
    loop {
        let mut buffer = std::mem::take(&mut carry);
        buffer.reserve(CHUNK_BYTES);
        // Append up to a chunk's worth without zero-filling the buffer first.
        let want = CHUNK_BYTES as u64;
        let mut got = 0;
        while got < want {
            match (&mut input).take(want - got).read_to_end(&mut buffer) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let at_end = got < want;
        if !at_end {
            // Keep the last partial line for the next chunk.
            match memchr::memrchr(b'\n', &buffer) {
                Some(cut) => carry = buffer.split_off(cut + 1),
                None => {
                    // A single line longer than a chunk: keep reading it.
                    carry = buffer;
                    continue;
                }
            }
        }
        if buffer.is_empty() {
            return Ok(());
        }
        let lines = memchr::memchr_iter(b'\n', &buffer).count() as u64
            + u64::from(buffer.last() != Some(&b'\n'));
        let chunk = Chunk {
            bytes: buffer,
            first_line: next_line,
        };
        next_line += lines;
        if !deliver(turn, chunk) || at_end {
            return Ok(());
        }
        turn += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use partnerdb_policy::{SourceFile, parse_policy};

    fn policy() -> CompiledPolicy {
        let text = r#"
[roles.analyst]
grants = [ { on = "metrics", can = ["read"] } ]
"#;
        CompiledPolicy::compile(parse_policy(&SourceFile::new("p.toml", text)).unwrap())
    }

    fn request(i: usize) -> String {
        let role = if i.is_multiple_of(3) {
            "analyst"
        } else {
            "nobody"
        };
        format!(
            r#"{{"principal":{{"id":"u{i}","roles":["{role}"]}},"action":"read","resource":{{"type":"metrics","id":"m{i}"}}}}"#
        )
    }

    #[test]
    fn keeps_order_across_chunks_and_threads() {
        // Enough lines for several chunks, an invalid line in the middle and
        // no final line break.
        let mut lines: Vec<String> = (0..40_000).map(request).collect();
        lines[25_000] = "{oops".into();
        let input = lines.join("\n");
        let mut out = Vec::new();
        let errors = decide_stream(&policy(), input.as_bytes(), &mut out, 3).unwrap();
        assert_eq!(errors, 1);
        let answers: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        assert_eq!(answers.len(), lines.len());
        for (i, answer) in answers.iter().enumerate() {
            if i == 25_000 {
                assert!(
                    answer.starts_with("{\"error\":\"line 25001: invalid request"),
                    "{answer}"
                );
            } else if i.is_multiple_of(3) {
                assert!(answer.contains("allow"), "{i}: {answer}");
            } else {
                assert!(
                    answer.contains("deny") && answer.contains("nobody (undefined)"),
                    "{i}: {answer}"
                );
            }
        }
    }

    #[test]
    fn answers_blank_lines_and_handles_crlf() {
        let input = format!("{}\r\n\r\n{}\n", request(0), request(1));
        let mut out = Vec::new();
        let errors = decide_stream(&policy(), input.as_bytes(), &mut out, 1).unwrap();
        assert_eq!(errors, 1);
        let text = String::from_utf8(out).unwrap();
        let answers: Vec<&str> = text.lines().collect();
        assert_eq!(answers.len(), 3);
        assert!(answers[0].contains("allow"));
        assert_eq!(answers[1], "{\"error\":\"line 2: empty line\"}");
        assert!(answers[2].contains("deny"));
    }
}
