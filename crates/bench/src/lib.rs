//! Benchmarks and workload generators for partnerdb: the decision workload
//! on the starter policy, the engines compared on it (partnerdb, a
//! hand-written bitset floor and, with the `peers` feature, cedar-policy
//! and casbin), and the agreement check every benchmark run makes before
//! timing.
//!
//! **Architecture invariant:** this is the only crate that depends on peer
//! engines, and only behind the `peers` feature.

pub mod engines;
pub mod workload;

#[cfg(feature = "peers")]
pub mod peers {
    //! Peer engines, translated from the same policy.
    pub mod casbin;
    pub mod cedar;
}

use engines::{Engine, Outcome};
use workload::WorkRequest;

/// A request on which two engines disagree.
#[derive(Debug)]
pub struct Disagreement {
    /// Index of the request.
    pub index: usize,
    /// What the reference engine answered.
    pub expected: Outcome,
    /// What the other engine answered.
    pub actual: Outcome,
    /// The matched grants, when both engines say and they differ.
    pub matched: Option<(Vec<String>, Vec<String>)>,
}

/// Checks that `other` answers every request as `reference` does (decision
/// and fields; matched grants too when both engines report them). Returns
/// the first disagreement.
pub fn agree<A: Engine, B: Engine>(
    reference: &A,
    other: &B,
    requests: &[WorkRequest],
) -> Result<(), Box<Disagreement>> {
    for (index, request) in requests.iter().enumerate() {
        let (a, b) = (reference.prepare(request), other.prepare(request));
        let (expected, actual) = (reference.decide(&a), other.decide(&b));
        let matched = match (reference.matched(&a), other.matched(&b)) {
            (Some(x), Some(y)) if x != y => Some((x, y)),
            _ => None,
        };
        if expected != actual || matched.is_some() {
            return Err(Box::new(Disagreement {
                index,
                expected,
                actual,
                matched,
            }));
        }
    }
    Ok(())
}

/// The starter policy, compiled.
pub fn starter_policy() -> anyhow::Result<partnerdb_policy::CompiledPolicy> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/starter.toml");
    let text = std::fs::read_to_string(path)?;
    let source = partnerdb_policy::SourceFile::new("policies/starter.toml", text);
    let policy = partnerdb_policy::parse_policy(&source)
        .map_err(|errors| anyhow::anyhow!("the starter policy does not check: {errors:?}"))?;
    Ok(partnerdb_policy::CompiledPolicy::compile(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engines::{Floor, Partnerdb};
    use workload::{Size, Workload};

    #[test]
    fn the_floor_agrees_with_partnerdb() {
        let policy = starter_policy().unwrap();
        let workload = Workload::generate(Size::STANDARD, 1);
        let requests = workload.requests(20_000, 2);
        let ours = Partnerdb::new(&policy, &workload);
        let floor = Floor::new(&policy, &workload);
        agree(&ours, &floor, &requests).unwrap();
        // Both answers occur, so agreement means something.
        let allowed = requests
            .iter()
            .filter(|r| ours.decide(&ours.prepare(r)).allowed)
            .count();
        assert!(allowed > 2_000 && allowed < 18_000, "{allowed}");
    }

    /// Run with `cargo test -p partnerdb-bench --features peers --release`.
    #[cfg(feature = "peers")]
    #[test]
    fn the_peers_agree_with_partnerdb() {
        use peers::{casbin::Casbin, cedar::Cedar, cedar::Mode};
        let policy = starter_policy().unwrap();
        let workload = Workload::generate(Size::STANDARD, 1);
        let requests = workload.requests(5_000, 3);
        let ours = Partnerdb::new(&policy, &workload);
        for mode in [Mode::PerClass, Mode::PerRequest] {
            let t = std::time::Instant::now();
            agree(
                &ours,
                &Cedar::new(&policy, &workload, mode).unwrap(),
                &requests,
            )
            .unwrap();
            eprintln!("cedar ({mode:?}) agrees ({:?})", t.elapsed());
        }
        let t = std::time::Instant::now();
        agree(&ours, &Casbin::new(&policy, &workload).unwrap(), &requests).unwrap();
        eprintln!("casbin agrees ({:?})", t.elapsed());
    }
}
