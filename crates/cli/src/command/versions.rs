//! `partnerdb policy propose | approve | reject | rollback | history | show`:
//! policy versions through a running server's API. The caller's token is
//! read from `PARTNERDB_TOKEN` or from `--token-file`, never from the
//! command line; an elevation token (for approve and rollback, which are
//! high-risk in the starter policy) from `PARTNERDB_ELEVATION` or
//! `--elevation-file`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::Outcome;

/// Where the server is and who is calling.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The server's base URL
    #[arg(long, env = "PARTNERDB_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A file holding your token [default: the PARTNERDB_TOKEN environment variable]
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// A file holding an elevation token [default: the PARTNERDB_ELEVATION environment variable, if set]
    #[arg(long, value_name = "PATH")]
    elevation_file: Option<PathBuf>,
    /// Print the server's answer as JSON
    #[arg(long)]
    json: bool,
}

/// `policy propose`.
#[derive(Debug, clap::Args)]
pub struct ProposeArgs {
    /// The policy file to propose
    file: PathBuf,
    /// Why (recorded with the version)
    #[arg(long, short)]
    message: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// `policy approve`, `reject`, `rollback`, `show`.
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// The version number
    #[arg(value_name = "VERSION")]
    number: i64,
    #[command(flatten)]
    api: ApiArgs,
}

/// `policy approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The version number
    #[arg(value_name = "VERSION")]
    number: i64,
    /// Apply it even though it denies something allowed recently (see `policy plan`)
    #[arg(long)]
    accept_breaking: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `policy plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The version number
    #[arg(value_name = "VERSION")]
    number: i64,
    /// Replay the recorded decisions of this many days
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3650))]
    days: i64,
    #[command(flatten)]
    api: ApiArgs,
}

/// `policy history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    api: ApiArgs,
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} from `{}`", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        bail!("`{}` is empty: expected {what}", path.display());
    }
    Ok(text.to_owned())
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
    elevation: Option<String>,
    json: bool,
}

impl Api {
    fn new(args: &ApiArgs) -> anyhow::Result<Api> {
        let token = match &args.token_file {
            Some(path) => read_secret(path, "a token")?,
            None => std::env::var("PARTNERDB_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .context("no token: set PARTNERDB_TOKEN or give --token-file PATH (tokens are never taken on the command line)")?,
        };
        let elevation = match &args.elevation_file {
            Some(path) => Some(read_secret(path, "an elevation token")?),
            None => std::env::var("PARTNERDB_ELEVATION")
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        Ok(Api {
            client: reqwest::Client::new(),
            base: args.server.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            elevation,
            json: args.json,
        })
    }

    /// Sends a request; a refusal prints the problem and is a finding.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Option<Value>> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(elevation) = &self.elevation {
            request = request.header("x-partnerdb-elevation", elevation);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Some(answer));
        }
        if self.json {
            println!("{answer}");
        } else {
            eprintln!(
                "refused ({} {}): {}",
                status.as_u16(),
                answer["code"].as_str().unwrap_or("?"),
                answer["detail"].as_str().unwrap_or("")
            );
        }
        if status.is_server_error() || status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("the server answered {status}");
        }
        Ok(None)
    }
}

fn print_version(v: &Value) {
    println!(
        "version {}  {}  {}  by {}{}  {}",
        v["number"],
        v["state"].as_str().unwrap_or("?"),
        v["hash"].as_str().unwrap_or("?"),
        v["author"].as_str().unwrap_or("?"),
        v["approved_by"]
            .as_str()
            .map(|a| format!(", approved by {a}"))
            .unwrap_or_default(),
        v["message"].as_str().unwrap_or(""),
    );
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn finish(api: &Api, answer: Option<Value>, show: impl Fn(&Value)) -> Outcome {
    match answer {
        Some(answer) => {
            if api.json {
                println!("{answer}");
            } else {
                show(&answer);
            }
            Outcome::Clean
        }
        None => Outcome::Findings,
    }
}

/// `policy propose FILE -m MSG`.
pub fn propose(args: ProposeArgs) -> anyhow::Result<Outcome> {
    let content = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let api = Api::new(&args.api)?;
    let answer = runtime()?.block_on(api.call(
        reqwest::Method::POST,
        "/v1/policy/versions",
        Some(json!({"content": content, "message": args.message})),
    ))?;
    Ok(finish(&api, answer, |v| {
        print_version(v);
        for finding in v["lint"].as_array().into_iter().flatten() {
            println!(
                "  {}[{}]: {}",
                finding["severity"].as_str().unwrap_or("?"),
                finding["code"].as_str().unwrap_or("?"),
                finding["message"].as_str().unwrap_or("")
            );
        }
        println!(
            "approve it with: partnerdb policy approve {} (by another principal)",
            v["number"]
        );
    }))
}

/// `policy approve | reject | rollback VERSION`.
pub fn decide(args: VersionArgs, verb: &str) -> anyhow::Result<Outcome> {
    let api = Api::new(&args.api)?;
    let answer = runtime()?.block_on(api.call(
        reqwest::Method::POST,
        &format!("/v1/policy/versions/{}/{verb}", args.number),
        Some(json!({})),
    ))?;
    Ok(finish(&api, answer, print_version))
}

/// `policy approve VERSION [--accept-breaking]`.
pub fn approve(args: ApproveArgs) -> anyhow::Result<Outcome> {
    let api = Api::new(&args.api)?;
    let answer = runtime()?.block_on(api.call(
        reqwest::Method::POST,
        &format!("/v1/policy/versions/{}/approve", args.number),
        Some(json!({"accept_breaking": args.accept_breaking})),
    ))?;
    Ok(finish(&api, answer, print_version))
}

/// `policy plan VERSION [--days N]`: exit 1 when the version is breaking
/// or fails the lockout check.
pub fn plan(args: PlanArgs) -> anyhow::Result<Outcome> {
    let api = Api::new(&args.api)?;
    let runtime = runtime()?;
    let bar = if api.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    bar.set_message(format!(
        "replaying {} days of recorded decisions",
        args.days
    ));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let answer = runtime.block_on(api.call(
        reqwest::Method::GET,
        &format!(
            "/v1/policy/versions/{}/plan?days={}",
            args.number, args.days
        ),
        None,
    ))?;
    bar.finish_and_clear();
    let Some(plan) = answer else {
        return Ok(Outcome::Findings);
    };
    let breaking = plan["simulation"]["breaking"] == Value::Bool(true);
    let lockout_ok = plan["lockout"]["ok"] == Value::Bool(true);
    if api.json {
        println!("{plan}");
    } else {
        print_plan(&plan);
    }
    Ok(if breaking || !lockout_ok {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn print_plan(plan: &Value) {
    print_version(&plan["version"]);
    println!(
        "against the active version {}",
        plan["against"].as_str().unwrap_or("?")
    );
    println!("\nroles:");
    for role in plan["diff"]["roles"].as_array().into_iter().flatten() {
        let list = |key: &str, sign: char| -> Vec<String> {
            role[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{sign}{} ({}{}) [{}]",
                        c["permission"].as_str().unwrap_or("?"),
                        c["scope"].as_str().unwrap_or("?"),
                        c["when"]
                            .as_array()
                            .filter(|w| !w.is_empty())
                            .map(|w| format!(", when {}", Value::Array(w.clone())))
                            .unwrap_or_default(),
                        c["fields"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect()
        };
        let mut changes = list("gained", '+');
        changes.extend(list("lost", '-'));
        println!(
            "  {} ({}): {}",
            role["role"].as_str().unwrap_or("?"),
            role["status"].as_str().unwrap_or("?"),
            changes.join("; ")
        );
    }
    println!("\nprincipals whose permissions change:");
    for p in plan["principals"].as_array().into_iter().flatten() {
        println!(
            "  {} {}: gains {} loses {}",
            p["id"].as_str().unwrap_or("?"),
            p["roles"],
            p["gained"],
            p["lost"]
        );
    }
    println!("\nlint (static, and against this deployment's bindings and usage):");
    let findings = plan["lint"].as_array().into_iter().flatten();
    for f in findings.chain(plan["usage_lint"].as_array().into_iter().flatten()) {
        println!(
            "  {}[{}]: {}",
            f["severity"].as_str().unwrap_or("?"),
            f["code"].as_str().unwrap_or("?"),
            f["message"].as_str().unwrap_or("")
        );
    }
    let lockout = &plan["lockout"];
    println!(
        "\nlockout: {} ({} administrator(s) after, {} now, at least {} required)",
        if lockout["ok"] == Value::Bool(true) {
            "ok"
        } else {
            "REFUSED"
        },
        lockout["administrators_after"],
        lockout["administrators_now"],
        lockout["min_admins"]
    );
    let sim = &plan["simulation"];
    println!(
        "\nsimulation over {} days: {} decisions replayed ({} skipped; loaded in {:.0} ms, replayed in {:.1} ms): {} allow→deny, {} deny→allow{}",
        sim["days"],
        sim["replayed"],
        sim["skipped"],
        sim["load_ms"].as_f64().unwrap_or(0.0),
        sim["replay_ms"].as_f64().unwrap_or(0.0),
        sim["total"]["allow_to_deny"],
        sim["total"]["deny_to_allow"],
        if sim["breaking"] == Value::Bool(true) {
            "  BREAKING: approve needs --accept-breaking"
        } else {
            ""
        }
    );
    for (what, key) in [
        ("role", "by_role"),
        ("route", "by_route"),
        ("principal", "by_principal"),
    ] {
        for (name, counts) in sim[key].as_object().into_iter().flatten() {
            println!(
                "  {what} {name}: {} allow→deny, {} deny→allow",
                counts["allow_to_deny"], counts["deny_to_allow"]
            );
        }
    }
    for e in sim["examples"].as_array().into_iter().flatten() {
        println!(
            "  e.g. {} {} on {} by {}: {} → {}",
            e["route"].as_str().unwrap_or(""),
            e["permission"].as_str().unwrap_or(""),
            e["resource_id"].as_str().unwrap_or(""),
            e["principal"].as_str().unwrap_or(""),
            e["before"].as_str().unwrap_or(""),
            e["after"].as_str().unwrap_or("")
        );
    }
}

/// `policy show VERSION`.
pub fn show(args: VersionArgs) -> anyhow::Result<Outcome> {
    let api = Api::new(&args.api)?;
    let answer = runtime()?.block_on(api.call(
        reqwest::Method::GET,
        &format!("/v1/policy/versions/{}", args.number),
        None,
    ))?;
    Ok(finish(&api, answer, |v| {
        print_version(v);
        println!();
        print!("{}", v["content"].as_str().unwrap_or(""));
    }))
}

/// `policy history`.
pub fn history(args: HistoryArgs) -> anyhow::Result<Outcome> {
    let api = Api::new(&args.api)?;
    let answer = runtime()?.block_on(api.call(
        reqwest::Method::GET,
        "/v1/policy/versions?limit=200",
        None,
    ))?;
    Ok(finish(&api, answer, |page| {
        for v in page["items"].as_array().into_iter().flatten() {
            print_version(v);
        }
    }))
}
