//! Writes random requests of the decision workload (10,000 principals with
//! 1–2 roles of the starter policy, 1,000 partners and their records) in the
//! batch format of `partnerdb authorize`, one JSON object a line.
//!
//! `gen-requests [COUNT] [SEED] > requests.jsonl` (default 1,000,000 and 1).

use std::io::{BufWriter, Write};

use partnerdb_bench::workload::{Size, Workload};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = match args.next() {
        Some(text) => text.replace('_', "").parse()?,
        None => 1_000_000,
    };
    let seed: u64 = match args.next() {
        Some(text) => text.parse()?,
        None => 1,
    };
    let workload = Workload::generate(Size::STANDARD, seed);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    // Generate in slices to bound memory for large counts.
    let mut written = 0;
    let mut round = 0;
    while written < count {
        let n = (count - written).min(100_000);
        for request in workload.requests(n, seed.wrapping_mul(1_000_003).wrapping_add(round)) {
            out.write_all(workload.to_json(&request).as_bytes())?;
            out.write_all(b"\n")?;
        }
        written += n;
        round += 1;
    }
    out.flush()?;
    Ok(())
}
