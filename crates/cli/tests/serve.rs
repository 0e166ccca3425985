//! `partnerdb init` and `partnerdb serve --demo` as a newcomer runs them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn partnerdb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_partnerdb"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn init_prints_a_token_once_and_refuses_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = partnerdb()
        .args(["init", "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.matches("pdb_").count(), 1, "{stdout}");
    assert!(data.join("partnerdb.db").exists());
    assert!(data.join("starter.toml").exists());
    let again = partnerdb()
        .args(["init", "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialised"));
    // The token is nowhere in the data directory in clear.
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("pdb_"))
        .unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
}

#[test]
fn serve_refuses_an_uninitialised_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = partnerdb()
        .args([
            "serve",
            "--data",
            dir.path().join("d").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("partnerdb init"));
}

#[test]
fn serve_names_the_durabilities_it_takes() {
    let out = partnerdb()
        .args(["serve", "--demo", "--read-event-durability", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--read-event-durability")
            && stderr.contains("[possible values: commit, disk]"),
        "{stderr}"
    );
}

#[test]
fn the_demo_refuses_remote_addresses_unless_told() {
    let out = partnerdb()
        .args(["serve", "--demo", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

#[test]
fn the_demo_starts_with_data_and_a_token_per_role() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let port = free_port();
    let mut child = partnerdb()
        .args([
            "serve",
            "--demo",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = Instant::now();
    let mut printed = String::new();
    while started.elapsed() < Duration::from_secs(120) {
        let Some(Ok(line)) = lines.next() else { break };
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("openapi.json") {
            break;
        }
    }
    let tokens_file = data.join("demo-tokens.json");
    let tokens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tokens_file).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&tokens_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let roles: std::collections::BTreeSet<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    for role in [
        "admin",
        "partner_manager",
        "finance",
        "legal",
        "analyst",
        "api_client",
        "read_only",
        "read_write",
        "maintenance",
    ] {
        assert!(roles.contains(role), "{role} missing from {tokens}");
        assert!(printed.contains(role), "{role} not printed");
    }
    let clients: Vec<&serde_json::Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "api_client")
        .collect();
    assert_eq!(clients.len(), 2);
    assert_ne!(clients[0]["partner_id"], clients[1]["partner_id"]);
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("principal_id").is_some() && t.get("token").is_some())
    );

    // Try the data with one of the tokens.
    let admin = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "admin")
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let counts = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut counts = Vec::new();
        for plural in ["partners", "contacts", "contracts", "transactions"] {
            let mut total = 0;
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("http://127.0.0.1:{port}/v1/{plural}?limit=500");
                if let Some(c) = &cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let page: serde_json::Value = client
                    .get(&url)
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                total += page["items"].as_array().unwrap().len();
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            counts.push(total);
        }
        counts
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        counts[0] >= 200 && counts[1] >= 2_000 && counts[2] >= 500 && counts[3] >= 20_000,
        "{counts:?}"
    );
}
