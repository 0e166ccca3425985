//! Policy-change benchmarks (never run by CI; see `scripts/bench-policy`):
//!
//! - `swap`: a generated policy of 100 roles and 10,000 principals bound
//!   to 1–3 of them: parse and check, compile, swap into use (an `ArcSwap`
//!   store, as the server does), and the approval's checks over every
//!   binding (separation of duties, administrators for the lockout rule).
//! - `simulate`: 1,000,000 recorded decisions of the decision workload
//!   (decided by the starter policy) loaded, then replayed against a
//!   candidate that changes one role.
//!
//! - `trail`: the same decisions stored in a fresh SQLite audit trail as
//!   the server records them, then a plan's simulation run by the service:
//!   the load from the trail (read, parse the detail) and the replay
//!   against the version in force and the candidate, timed apart.
//!
//! ```text
//! policy-bench swap [RUNS]
//! policy-bench simulate [DECISIONS]
//! policy-bench trail DIR [DECISIONS]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use partnerdb_bench::workload::{Rng, Size, Workload};
use partnerdb_policy::diagnostic::SourceFile;
use partnerdb_policy::simulate::{Loaded, Recorded};
use partnerdb_policy::{CompiledPolicy, parse_policy};
use partnerdb_service::principals::{administrators, sod_violation};

const RESOURCES: &[(&str, &[&str], &[&str])] = &[
    (
        "partner",
        &["read", "create", "update"],
        &["general", "financial"],
    ),
    (
        "contact",
        &["read", "create", "update", "delete"],
        &["general", "pii"],
    ),
    (
        "contract",
        &["read", "create", "propose", "approve"],
        &["general", "legal", "financial"],
    ),
    (
        "transaction",
        &["read", "create", "update", "refund"],
        &["general", "financial"],
    ),
];

/// A policy of `roles` roles (plus an administrator), each with 4–8 grants
/// drawn from the record types, scopes and conditions.
fn generated_policy(roles: usize, rng: &mut Rng) -> String {
    let mut text = String::from(
        "[policy]\nname = \"generated\"\nmin_admins = 2\n\n[roles.admin]\ndescription = \"all\"\nsuperuser = true\ngrants = [ { on = \"*\", can = [\"*\"] } ]\n\n",
    );
    for r in 0..roles {
        let _ = writeln!(
            text,
            "[roles.role_{r:03}]\ndescription = \"generated role {r}\"\ngrants = ["
        );
        for _ in 0..(4 + rng.below(5)) {
            let (on, actions, classes) = RESOURCES[rng.below(RESOURCES.len())];
            let action = actions[rng.below(actions.len())];
            let class = classes[rng.below(classes.len())];
            let reach = match rng.below(4) {
                0 => ", scope = \"owned\"".to_owned(),
                1 => ", scope = \"own_partner\"".to_owned(),
                2 => format!(
                    ", when = {{ region = \"{}\" }}",
                    ["emea", "amer", "apac"][rng.below(3)]
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                text,
                "  {{ on = \"{on}\", can = [\"{action}\"], fields = [\"general\", \"{class}\"]{reach} }},"
            );
        }
        text.push_str("]\n\n");
    }
    text.push_str(
        "[[separation_of_duties]]\nname = \"contract maker-checker\"\nconflicting = [\"contract:propose\", \"contract:approve\"]\n\n\
         [[separation_of_duties]]\nname = \"transaction maker-checker\"\nconflicting = [\"transaction:create\", \"transaction:refund\"]\n\n\
         [high_risk]\npermissions = [\"partner:delete\", \"contract:delete\", \"transaction:refund\", \"*:export\", \"policy:apply\"]\n",
    );
    text
}

fn median(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn swap(runs: usize) -> anyhow::Result<()> {
    let mut rng = Rng::new(7);
    let text = generated_policy(100, &mut rng);
    let source = SourceFile::new("generated.toml", &text);
    let role_names: Vec<String> = (0..100).map(|r| format!("role_{r:03}")).collect();
    let mut bindings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in 0..10_000 {
        let roles = if p < 5 {
            vec!["admin".to_owned()]
        } else {
            (0..1 + rng.below(3))
                .map(|_| role_names[rng.below(100)].clone())
                .collect()
        };
        bindings.insert(format!("u{p:05}"), roles);
    }
    let active = arc_swap::ArcSwap::from_pointee(CompiledPolicy::compile(
        parse_policy(&source)
            .map_err(|d| anyhow::anyhow!("generated policy invalid: {} errors", d.len()))?,
    ));
    let (mut parse, mut compile, mut store, mut sod, mut admins) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut conflicts = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let policy = parse_policy(&source).map_err(|_| anyhow::anyhow!("invalid"))?;
        parse.push(t.elapsed());
        let t = Instant::now();
        let compiled = CompiledPolicy::compile(policy);
        compile.push(t.elapsed());
        let t = Instant::now();
        conflicts = bindings
            .values()
            .filter(|roles| sod_violation(&compiled, roles).is_some())
            .count();
        sod.push(t.elapsed());
        let t = Instant::now();
        let count = administrators(&compiled, &bindings).len();
        admins.push(t.elapsed());
        if count != 5 {
            bail!("expected 5 administrators, found {count}");
        }
        let t = Instant::now();
        active.store(Arc::new(compiled));
        store.push(t.elapsed());
    }
    let total: Vec<Duration> = (0..runs)
        .map(|i| parse[i] + compile[i] + store[i])
        .collect();
    println!(
        "policy: 100 roles (+ admin), {} grants, {} bytes; 10,000 principals bound to 1-3 roles; {runs} runs (median / max)",
        text.matches("{ on =").count(),
        text.len()
    );
    for (name, samples) in [
        ("parse and check", parse),
        ("compile", compile),
        ("swap (ArcSwap store)", store),
        ("compile and swap (sum)", total),
        ("separation of duties over 10,000 bindings", sod),
        ("administrators over 10,000 bindings", admins),
    ] {
        let (m, x) = median(samples);
        println!("  {name:<44} {:>10}  {:>10}", ms(m), ms(x));
    }
    println!(
        "  ({conflicts} principals' bindings break a separation-of-duties rule under the generated policy)"
    );
    Ok(())
}

fn simulate(count: usize) -> anyhow::Result<()> {
    let starter = partnerdb_bench::starter_policy()?;
    let candidate = candidate()?;
    let workload = Workload::generate(Size::STANDARD, 1);
    let started = Instant::now();
    let mut lines = Vec::with_capacity(count);
    let mut seed = 0;
    while lines.len() < count {
        for request in workload.requests((count - lines.len()).min(100_000), 1_000 + seed) {
            lines.push(workload.to_json(&request));
        }
        seed += 1;
    }
    // The recorded outcome: the starter's decision.
    let mut out = Vec::new();
    let allowed: Vec<bool> = lines
        .iter()
        .map(|line| {
            out.clear();
            partnerdb_policy::batch::decide_line(&starter, line, &mut out);
            out.starts_with(b"{\"decision\":\"allow\"")
        })
        .collect();
    println!(
        "{count} recorded decisions generated in {:.1} s ({} allowed)",
        started.elapsed().as_secs_f64(),
        allowed.iter().filter(|a| **a).count()
    );
    let started = Instant::now();
    let loaded = Loaded::load(lines.iter().zip(&allowed).map(|(line, &allowed)| Recorded {
        input: line,
        allowed,
        route: "GET /v1/x/{id}",
    }));
    let load = started.elapsed();
    println!(
        "load (parse {} inputs): {:.2} s, {:.0} decisions/s",
        loaded.len(),
        load.as_secs_f64(),
        loaded.len() as f64 / load.as_secs_f64()
    );
    for run in 1..=3 {
        let started = Instant::now();
        let simulation = loaded.replay(None, &candidate);
        let took = started.elapsed();
        println!(
            "replay run {run}: {} decisions in {:.3} s, {:.0} decisions/s; {} allow→deny, {} deny→allow",
            simulation.replayed,
            took.as_secs_f64(),
            simulation.replayed as f64 / took.as_secs_f64(),
            simulation.total.allow_to_deny,
            simulation.total.deny_to_allow
        );
    }
    Ok(())
}

/// The candidate of the simulation benchmarks: analysts may read
/// partners, partner managers lose contract proposals.
fn candidate() -> anyhow::Result<CompiledPolicy> {
    let text = partnerdb_service::STARTER_POLICY;
    let analyst = r#"grants = [ { on = "metrics", can = ["read"] } ]"#;
    if !text.contains(analyst) {
        bail!("the starter policy changed: update the candidate");
    }
    let candidate_text = text
        .replace(analyst, r#"grants = [ { on = "metrics", can = ["read"] }, { on = "partner", can = ["read"], fields = ["general"] } ]"#)
        .replace(r#"can = ["read", "create", "propose"]"#, r#"can = ["read", "create"]"#);
    Ok(CompiledPolicy::compile(
        parse_policy(&SourceFile::new("candidate.toml", &candidate_text))
            .map_err(|_| anyhow::anyhow!("candidate invalid"))?,
    ))
}

fn trail(dir: &str, count: usize) -> anyhow::Result<()> {
    use partnerdb_audit::{Event, StoredEvent};
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let path = std::path::Path::new(dir).join("trail.db");
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}", path.display());
        let db = partnerdb_store::Db::connect(&url, &partnerdb_store::DbOptions::default()).await?;
        db.migrate().await?;
        let clock: Arc<dyn partnerdb_service::Clock> = Arc::new(partnerdb_service::SystemClock);
        partnerdb_service::bootstrap(&db, partnerdb_service::STARTER_POLICY, "bench", &*clock).await?;
        let starter = partnerdb_bench::starter_policy()?;
        let workload = Workload::generate(Size::STANDARD, 1);
        let started = Instant::now();
        let at = partnerdb_store::now();
        let mut seq = partnerdb_store::audit::head(&db).await?.0;
        let mut out = Vec::new();
        let mut written = 0;
        let mut round = 0;
        while written < count {
            let n = (count - written).min(20_000);
            let mut events = Vec::with_capacity(n);
            for request in workload.requests(n, 5_000 + round) {
                let line = workload.to_json(&request);
                out.clear();
                partnerdb_policy::batch::decide_line(&starter, &line, &mut out);
                let allowed = out.starts_with(b"{\"decision\":\"allow\"");
                let input: serde_json::Value = serde_json::from_str(&line)?;
                let detail = serde_json::json!({
                    "request": {"id": "b", "method": "GET", "route": "/v1/partners/{id}"},
                    "input": input,
                    "engine": true,
                });
                seq += 1;
                events.push(StoredEvent {
                    event: Event {
                        seq,
                        at: at.clone(),
                        kind: "decision".into(),
                        principal_id: Some(input["principal"]["id"].as_str().unwrap_or("").to_owned()),
                        action: input["action"].as_str().unwrap_or("").to_owned(),
                        resource_type: input["resource"]["type"].as_str().unwrap_or("").to_owned(),
                        resource_id: input["resource"]["id"].as_str().map(str::to_owned),
                        partner_id: input["resource"]["partner_id"].as_str().map(str::to_owned),
                        decision: if allowed { "allow" } else { "deny" }.into(),
                        policy_version: "bench".into(),
                        detail: detail.to_string(),
                    },
                    prev_hash: String::new(),
                    hash: String::new(),
                });
            }
            let mut tx = db.begin().await?;
            partnerdb_store::audit::insert_stored(&mut tx, &events).await?;
            tx.commit().await?;
            written += n;
            round += 1;
        }
        println!("{count} recorded decisions stored in {:.1} s", started.elapsed().as_secs_f64());
        let service = partnerdb_service::Service::open(db.clone(), clock, partnerdb_service::audit::AuditConfig::default()).await?;
        let candidate = candidate()?;
        for run in 1..=3 {
            let started = Instant::now();
            let active = service.active_now().await?;
            let simulation = service.simulate(&active, &candidate, 30).await?;
            let took = started.elapsed().as_secs_f64();
            let replayed = simulation["replayed"].as_f64().unwrap_or(0.0);
            let replay_s = simulation["replay_ms"].as_f64().unwrap_or(0.0) / 1e3;
            println!(
                "plan simulation run {run}: {replayed} decisions in {took:.2} s: load from the trail {:.2} s, replay {:.3} s ({:.0} decisions/s); {} allow→deny, {} deny→allow",
                simulation["load_ms"].as_f64().unwrap_or(0.0) / 1e3,
                replay_s,
                replayed / replay_s,
                simulation["total"]["allow_to_deny"],
                simulation["total"]["deny_to_allow"],
            );
        }
        db.close().await;
        anyhow::Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("swap") => swap(
            args.next()
                .map(|n| n.parse())
                .transpose()
                .context("RUNS: a number")?
                .unwrap_or(20),
        ),
        Some("simulate") => simulate(
            args.next()
                .map(|n| n.replace('_', "").parse())
                .transpose()
                .context("DECISIONS: a number")?
                .unwrap_or(1_000_000),
        ),
        Some("trail") => {
            let dir = args
                .next()
                .context("usage: policy-bench trail DIR [DECISIONS]")?;
            let count = args
                .next()
                .map(|n| n.replace('_', "").parse())
                .transpose()
                .context("DECISIONS: a number")?
                .unwrap_or(1_000_000);
            trail(&dir, count)
        }
        _ => {
            bail!("usage: policy-bench swap [RUNS] | simulate [DECISIONS] | trail DIR [DECISIONS]")
        }
    }
}
