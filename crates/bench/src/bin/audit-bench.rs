//! Audit trail benchmarks (never run by CI; see `scripts/bench-audit`):
//!
//! - `append`: events per second through the group-committing writer, each
//!   producer waiting for its event's durable commit before sending the
//!   next (as a request does), and, for contrast, one transaction per event;
//! - `verify`: bulk-loads a chain of N events (with a signed checkpoint
//!   every 10,000) and times a full `audit verify` over it, and the hashing
//!   alone over the same events in memory.
//!
//! ```text
//! audit-bench append --database-url URL [--events N] [--producers P]
//! audit-bench verify --database-url URL [--events N]
//! ```
//!
//! The database must be empty (a fresh SQLite file or PostgreSQL database).

use std::time::Instant;

use anyhow::{Context, bail};
use partnerdb_audit::{ChainVerifier, Checkpoint, CheckpointKey, GENESIS};
use partnerdb_service::audit::{AuditWriter, ReadDurability, verify};
use partnerdb_store::audit::{self as store, NewEvent};
use partnerdb_store::{Db, DbOptions};

/// The allocator the server runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    command: String,
    url: String,
    events: usize,
    producers: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let command = it.next().context(
        "usage: audit-bench append|verify --database-url URL [--events N] [--producers P]",
    )?;
    let mut out = Args {
        command,
        url: String::new(),
        events: 0,
        producers: 512,
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database-url" => out.url = value,
            "--events" => out.events = value.parse().context("--events: a number")?,
            "--producers" => out.producers = value.parse().context("--producers: a number")?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if out.url.is_empty() {
        bail!("--database-url is required");
    }
    Ok(out)
}

/// A read decision event shaped like the server's (about 600 bytes of
/// detail, its keys in order as the server writes them): 200 principals,
/// 1,000 partners. Its text is formatted, not built as a JSON tree, so
/// that the producers cost about what the server's event builder does.
fn event(i: usize) -> NewEvent {
    let principal = format!("0192f000-0000-7000-8000-{:012x}", i % 200);
    let partner = format!("0192f000-0000-7000-9000-{:012x}", i % 1000);
    let record = format!("0192f000-0000-7000-a000-{i:012x}");
    let matched = vec![format!("partner_manager#{}", i % 3)];
    let detail = format!(
        concat!(
            r#"{{"input":{{"action":"read","elevated":false,"principal":{{"attrs":{{"region":"emea"}},"id":"{principal}","partner_id":null,"roles":["partner_manager"]}},"#,
            r#""resource":{{"attrs":{{"currency":"EUR","region":"emea","status":"active","tier":"gold"}},"id":"{record}","owner":"{principal}","partner_id":"{partner}","type":"contract"}}}},"#,
            r#""matched":["{grant}"],"request":{{"id":"0192f000-0000-7000-b000-{i:012x}","method":"GET","route":"/v1/contracts/{{id}}"}}}}"#
        ),
        principal = principal,
        record = record,
        partner = partner,
        grant = matched[0],
        i = i,
    );
    NewEvent {
        at: partnerdb_store::format_time(jiff::Timestamp::now()),
        kind: "decision".into(),
        principal_id: Some(principal),
        action: "read".into(),
        resource_type: "contract".into(),
        resource_id: Some(record),
        partner_id: Some(partner),
        decision: "allow".into(),
        policy_version: "92e8fc5f20c47e0f".into(),
        detail,
        matched,
    }
}

/// CPU time this process has used (user and system), from
/// `/proc/self/stat`; `None` where that cannot be read.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn open(url: &str) -> anyhow::Result<Db> {
    let options = DbOptions {
        max_connections: 8,
        ..DbOptions::default()
    };
    let db = Db::connect(url, &options)
        .await
        .context("cannot open the database")?;
    db.migrate().await.context("cannot migrate")?;
    if store::head(&db).await?.0 != 0 {
        bail!("the database already holds audit events: give a fresh one");
    }
    Ok(db)
}

async fn append(args: &Args) -> anyhow::Result<()> {
    let db = open(&args.url).await?;
    let total = if args.events == 0 {
        200_000
    } else {
        args.events
    };
    let writer = AuditWriter::start(db.clone(), 4096, ReadDurability::Disk);
    // The server's indexer runs beside the appends, as in `serve`: its
    // work is part of what an appended event costs.
    let indexer = tokio::spawn(partnerdb_service::audit::indexer(
        db.clone(),
        partnerdb_service::audit::AuditConfig::default().index_interval,
    ));
    // Warm-up.
    for i in 0..1000 {
        writer.write(event(i)).await?;
    }
    let per_producer = total / args.producers;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..per_producer {
                writer.write(event(1000 + p * per_producer + j)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let written = per_producer * args.producers;
    // Until the lookup tables hold every event appended.
    let head = store::head(&db).await?.0;
    while store::indexed_through(&db).await? < head {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let indexed = started.elapsed();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    indexer.abort();
    println!(
        "group commit: {written} events, {} producers, {:.2} s, {:.0} events/s; \
         indexed {:.2} s after the start ({:.0} events/s appended and indexed); \
         CPU {}",
        args.producers,
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        indexed.as_secs_f64(),
        written as f64 / indexed.as_secs_f64(),
        cpu.map_or("unknown".to_owned(), |cpu| format!(
            "{cpu:.2} s, {:.1} µs an event",
            cpu * 1e6 / written as f64
        ))
    );

    // For contrast: one durable transaction per event, one producer.
    let single: u32 = 2000;
    let started = Instant::now();
    for i in 0..single {
        let mut tx = db.begin().await?;
        store::append(&mut tx, vec![event(10_000_000 + i as usize)]).await?;
        tx.commit().await?;
    }
    let elapsed = started.elapsed();
    println!(
        "one transaction per event: {single} events, {:.2} s, {:.0} events/s",
        elapsed.as_secs_f64(),
        f64::from(single) / elapsed.as_secs_f64()
    );
    db.close().await;
    Ok(())
}

async fn verify_bench(args: &Args) -> anyhow::Result<()> {
    let db = open(&args.url).await?;
    let total = if args.events == 0 {
        1_000_000
    } else {
        args.events
    };
    let key = CheckpointKey::from_seed([7; 32]);
    let started = Instant::now();
    let chain = partnerdb_audit::link(
        GENESIS,
        (0..total).map(|i| event(i).into_event(i as i64 + 1)),
    );
    let checkpoints: Vec<Checkpoint> = chain
        .iter()
        .filter(|stored| stored.event.seq % 10_000 == 0)
        .map(|stored| key.sign(stored.event.seq, &stored.hash, &stored.event.at))
        .collect();
    for chunk in chain.chunks(20_000) {
        let mut tx = db.begin().await?;
        store::insert_stored(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    let mut tx = db.begin().await?;
    for checkpoint in &checkpoints {
        store::insert_checkpoint(&mut tx, checkpoint).await?;
    }
    tx.commit().await?;
    let bytes: usize = chain.iter().map(|s| s.event.detail.len()).sum();
    println!(
        "loaded {total} events ({:.0} MB of detail) and {} checkpoints in {:.1} s",
        bytes as f64 / 1e6,
        checkpoints.len(),
        started.elapsed().as_secs_f64()
    );

    // Hashing and linking alone, in memory.
    let public = key.public();
    let started = Instant::now();
    let mut verifier = ChainVerifier::new(checkpoints.clone(), Some(&public));
    for stored in &chain {
        verifier.push(stored)?;
    }
    verifier.finish()?;
    println!(
        "in memory (hash, link, checkpoints): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    drop(chain);

    for run in 1..=3 {
        let started = Instant::now();
        let report = verify(&db, Vec::new(), Some(&public), |_| {}).await?;
        println!(
            "audit verify run {run}: {} events, {} checkpoints, {:.2} s, {:.0} events/s",
            report.events,
            report.checkpoints,
            started.elapsed().as_secs_f64(),
            report.events as f64 / started.elapsed().as_secs_f64()
        );
    }
    db.close().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match args.command.as_str() {
            "append" => append(&args).await,
            "verify" => verify_bench(&args).await,
            other => bail!("unknown command {other}: append or verify"),
        }
    })
}
