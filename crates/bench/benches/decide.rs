//! The decision benchmark: partnerdb's compiled engine on the starter
//! policy against a hand-written bitset floor and, with `--features peers`,
//! cedar-policy and casbin modelling the same roles, scopes and fields.
//!
//! 1. Generates the workload (10,000 principals with 1–2 roles, 1,000
//!    partners and their records) and 100,000 random requests.
//! 2. Checks that every engine answers all 100,000 exactly as partnerdb
//!    does (decision and visible classes; matched grants too for Cedar),
//!    and stops if one does not. How each peer is modelled and called is
//!    in its module's documentation (`src/peers/`).
//! 3. Criterion: mean time per decision, over batches of 1,000 requests
//!    (100 for the peers).
//! 4. Per-call latency: every one of the 100,000 requests timed on its own
//!    (timer included), median and p99, and the ratios.
//!
//! Run: `cargo bench -p partnerdb-bench --features peers --bench decide`
//! (`-- --quick` for a shorter criterion pass).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops loudly"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use partnerdb_bench::engines::{Engine, Floor, Partnerdb};
use partnerdb_bench::workload::{Size, Workload};
use partnerdb_bench::{agree, starter_policy};

const REQUESTS: usize = 100_000;
const BATCH: usize = 1_000;
#[cfg(feature = "peers")]
const PEER_BATCH: usize = 100;

struct Row {
    name: &'static str,
    calls_per_decision: f64,
    median_ns: u64,
    p99_ns: u64,
    mean_ns: f64,
}

fn latency<E: Engine>(engine: &E, prepared: &[E::Prepared], calls_per_decision: f64) -> Row {
    // Warm up caches and branch predictors on the whole set once.
    for p in prepared {
        black_box(engine.decide(black_box(p)));
    }
    let start = Instant::now();
    for p in prepared {
        black_box(engine.decide(black_box(p)));
    }
    let mean_ns = start.elapsed().as_nanos() as f64 / prepared.len() as f64;
    let mut samples: Vec<u64> = prepared
        .iter()
        .map(|p| {
            let t = Instant::now();
            black_box(engine.decide(black_box(p)));
            t.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    Row {
        name: engine.name(),
        calls_per_decision,
        median_ns: samples[samples.len() / 2],
        p99_ns: samples[samples.len() * 99 / 100],
        mean_ns,
    }
}

/// Criterion's mean time per decision, over batches of `batch` requests
/// (smaller batches for the slow peers, so that a run stays short).
fn bench_engine<E: Engine>(c: &mut Criterion, engine: &E, prepared: &[E::Prepared], batch: usize) {
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(batch as u64));
    group.sample_size(if batch < BATCH { 20 } else { 100 });
    let batches: Vec<&[E::Prepared]> = prepared.chunks(batch).take(100).collect();
    let mut next = 0;
    group.bench_function(engine.name(), |b| {
        b.iter(|| {
            let batch = batches[next % batches.len()];
            next += 1;
            for p in batch {
                black_box(engine.decide(black_box(p)));
            }
        })
    });
    group.finish();
}

fn main() {
    let policy = starter_policy().unwrap();
    let workload = Workload::generate(Size::STANDARD, 2026);
    let requests = workload.requests(REQUESTS, 11);
    let ours = Partnerdb::new(&policy, &workload);
    let floor = Floor::new(&policy, &workload);

    let allowed = requests
        .iter()
        .filter(|r| ours.decide(&ours.prepare(r)).allowed)
        .count();
    println!(
        "workload: {} principals, {} partners, {} records, {} requests ({} allowed, {} denied)",
        workload.principals.len(),
        workload.by_partner.len(),
        workload.records.len(),
        requests.len(),
        allowed,
        requests.len() - allowed
    );
    #[allow(unused_variables, reason = "used by the peers")]
    let classes_per_request = requests
        .iter()
        .map(|r| workload.records[r.record].kind.class_list().len())
        .sum::<usize>() as f64
        / requests.len() as f64;

    let t = Instant::now();
    agree(&ours, &floor, &requests).unwrap_or_else(|d| panic!("floor disagrees: {d:?}"));
    println!(
        "agreement: bitset floor answers all {REQUESTS} requests as partnerdb ({:.1?})",
        t.elapsed()
    );

    let ours_prepared: Vec<_> = requests.iter().map(|r| ours.prepare(r)).collect();
    let floor_prepared: Vec<_> = requests.iter().map(|r| floor.prepare(r)).collect();
    #[allow(unused_mut, reason = "the peers add rows")]
    let mut rows = vec![
        latency(&ours, &ours_prepared, 1.0),
        latency(&floor, &floor_prepared, 1.0),
    ];

    #[cfg(feature = "peers")]
    let peers = {
        use partnerdb_bench::peers::casbin::Casbin;
        use partnerdb_bench::peers::cedar::{Cedar, Mode};
        let t = Instant::now();
        let cedar_class = Cedar::new(&policy, &workload, Mode::PerClass).unwrap();
        let cedar_request = Cedar::new(&policy, &workload, Mode::PerRequest).unwrap();
        let casbin = Casbin::new(&policy, &workload).unwrap();
        println!("peers set up in {:.1?}", t.elapsed());
        for (name, result) in [
            (
                "cedar-policy (a call per class)",
                agree(&ours, &cedar_class, &requests).err(),
            ),
            (
                "cedar-policy (a call per request)",
                agree(&ours, &cedar_request, &requests).err(),
            ),
        ] {
            if let Some(d) = result {
                panic!("{name} disagrees: {d:?}");
            }
            println!(
                "agreement: {name} answers all {REQUESTS} requests as partnerdb, matched grants included"
            );
        }
        agree(&ours, &casbin, &requests).unwrap_or_else(|d| panic!("casbin disagrees: {d:?}"));
        println!("agreement: casbin answers all {REQUESTS} requests as partnerdb");
        let cedar_class_prepared: Vec<_> =
            requests.iter().map(|r| cedar_class.prepare(r)).collect();
        let cedar_request_prepared: Vec<_> =
            requests.iter().map(|r| cedar_request.prepare(r)).collect();
        let casbin_prepared: Vec<_> = requests.iter().map(|r| casbin.prepare(r)).collect();
        rows.push(latency(&cedar_request, &cedar_request_prepared, 1.0));
        rows.push(latency(
            &cedar_class,
            &cedar_class_prepared,
            classes_per_request,
        ));
        rows.push(latency(&casbin, &casbin_prepared, classes_per_request));
        (
            cedar_request,
            cedar_request_prepared,
            cedar_class,
            cedar_class_prepared,
            casbin,
            casbin_prepared,
        )
    };

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_engine(&mut criterion, &ours, &ours_prepared, BATCH);
    bench_engine(&mut criterion, &floor, &floor_prepared, BATCH);
    #[cfg(feature = "peers")]
    {
        let (
            cedar_request,
            cedar_request_prepared,
            cedar_class,
            cedar_class_prepared,
            casbin,
            casbin_prepared,
        ) = &peers;
        bench_engine(
            &mut criterion,
            cedar_request,
            cedar_request_prepared,
            PEER_BATCH,
        );
        bench_engine(
            &mut criterion,
            cedar_class,
            cedar_class_prepared,
            PEER_BATCH,
        );
        bench_engine(&mut criterion, casbin, casbin_prepared, PEER_BATCH);
    }
    criterion.final_summary();

    println!(
        "\nper-call latency over {REQUESTS} requests, each timed on its own (timer included):\n"
    );
    println!("| engine | calls per decision | median ns | p99 ns | mean ns (untimed loop) |");
    println!("|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.2} | {} | {} | {:.1} |",
            row.name, row.calls_per_decision, row.median_ns, row.p99_ns, row.mean_ns
        );
    }
    let ours_row = &rows[0];
    println!();
    for row in &rows[1..] {
        println!(
            "{} / partnerdb: median {:.2}×, p99 {:.2}×, mean {:.2}×",
            row.name,
            row.median_ns as f64 / ours_row.median_ns as f64,
            row.p99_ns as f64 / ours_row.p99_ns as f64,
            row.mean_ns / ours_row.mean_ns
        );
    }
}
