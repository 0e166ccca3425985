//! The `partnerdb` binary end to end: exit statuses, output formats and the
//! starter policy's own test file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn partnerdb(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_partnerdb"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn the_starter_policy_checks_and_lints_clean() {
    let out = partnerdb(&["policy", "check", "policies/starter.toml"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = partnerdb(
        &[
            "policy",
            "lint",
            "policies/starter.toml",
            "--json",
            "--deny-warnings",
        ],
        None,
    );
    assert!(out.status.success());
    let lint: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lint["errors"], 0);
    assert_eq!(lint["warnings"], 0);
    assert_eq!(lint["infos"], 1);
    assert_eq!(lint["findings"][0]["code"], "superuser");
}

#[test]
fn the_starter_policy_passes_its_test_file() {
    let out = partnerdb(&["policy", "test", "policies/starter.test.toml"], None);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("0 failed"));
}

#[test]
fn a_failing_case_prints_a_diff_and_exits_1() {
    let dir = tempdir();
    let tests = dir.join("t.toml");
    std::fs::write(
        &tests,
        format!(
            r#"policy = "{}"
[[case]]
name = "analyst reads a partner"
principal = {{ id = "a", roles = ["analyst"] }}
action = "read"
resource = {{ type = "partner", id = "p1", partner_id = "p1" }}
expect = "allow"
fields = ["general"]
"#,
            root().join("policies/starter.toml").display()
        ),
    )
    .unwrap();
    let out = partnerdb(&["policy", "test", tests.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL  analyst reads a partner"), "{stdout}");
    assert!(stdout.contains("- expected allow"), "{stdout}");
    assert!(
        stdout.contains("+ actual   deny (no grant of roles [analyst] covers partner:read)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- expected [general]\n        + actual   []"),
        "{stdout}"
    );
}

#[test]
fn check_reports_errors_with_location_and_exits_1() {
    let policy = "[roles.pm]\ngrants = [ { on = \"contract\", can = [\"aprove\"] } ]\n";
    let out = partnerdb(&["policy", "check", "-"], Some(policy));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown action \"aprove\" on contract; did you mean \"approve\"?"),
        "{stderr}"
    );
    assert!(stderr.contains("--> -:2:38"), "{stderr}");
    let out = partnerdb(&["policy", "check", "-", "--json"], Some(policy));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["diagnostics"][0]["line"], 2);
    assert_eq!(json["diagnostics"][0]["column"], 38);
}

#[test]
fn authorize_answers_in_order_and_flags_bad_lines() {
    let requests = concat!(
        r#"{"principal":{"id":"u1","roles":["partner_manager"],"partner_id":null,"attrs":{"region":"emea"}},"action":"read","resource":{"type":"partner","id":"p7","partner_id":"p7","owner":"u1","attrs":{"region":"emea"}},"elevated":false}"#,
        "\n",
        r#"{"principal":{"id":"u1","roles":["analyst"]},"action":"read","resource":{"type":"partner","id":"p7"}}"#,
        "\n",
        r#"{"principal":{"id":"u1","roles":["analyst"]},"action":"fly","resource":{"type":"partner","id":"p7"}}"#,
        "\n",
    );
    let out = partnerdb(
        &[
            "authorize",
            "--policy",
            "policies/starter.toml",
            "--requests",
            "-",
        ],
        Some(requests),
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            r#"{"decision":"allow","fields":["general"],"matched":["partner_manager#0","partner_manager#1"]}"#,
            r#"{"decision":"deny","reason":"no grant of roles [analyst] covers partner:read"}"#,
            r#"{"error":"line 3: partner has no action `fly`"}"#,
        ]
    );
}

#[test]
fn authorize_refuses_an_invalid_policy() {
    let dir = tempdir();
    let policy = dir.join("bad.toml");
    std::fs::write(
        &policy,
        "[roles.a]\ngrants = [ { on = \"nope\", can = [\"read\"] } ]\n",
    )
    .unwrap();
    let out = partnerdb(
        &[
            "authorize",
            "--policy",
            policy.to_str().unwrap(),
            "--requests",
            "-",
        ],
        Some(""),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not pass check"));
}

#[test]
fn diff_exits_1_on_differences() {
    let dir = tempdir();
    let new = dir.join("new.toml");
    let starter = std::fs::read_to_string(root().join("policies/starter.toml")).unwrap();
    std::fs::write(
        &new,
        starter.replace(
            r#"{ on = "partner",     can = ["update"], fields = ["financial"] },"#,
            r#"{ on = "partner",     can = ["update", "delete"], fields = ["financial"] },"#,
        ),
    )
    .unwrap();
    let same = partnerdb(
        &[
            "policy",
            "diff",
            "policies/starter.toml",
            "policies/starter.toml",
        ],
        None,
    );
    assert_eq!(same.status.code(), Some(0));
    assert_eq!(text(&same.stdout), "no differences\n");
    let out = partnerdb(
        &[
            "policy",
            "diff",
            "policies/starter.toml",
            new.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["roles"][0]["role"], "finance");
    assert_eq!(
        json["roles"][0]["gained"][0]["permission"],
        "partner:delete"
    );
}

#[test]
fn explain_exits_by_decision() {
    let request = r#"{"principal":{"id":"u1","roles":["analyst"]},"action":"read","resource":{"type":"metrics","id":"m"}}"#;
    let out = partnerdb(
        &[
            "policy",
            "explain",
            "policies/starter.toml",
            "--request",
            request,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("✓ analyst#0"));
    let out = partnerdb(
        &["policy", "explain", "policies/starter.toml", "--json"],
        Some(&request.replace("metrics", "partner")),
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"], "deny");
    assert_eq!(
        json["roles"][0]["grants"][0]["detail"],
        "does not cover partner"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["policy", "--help"],
        vec!["policy", "check", "--help"],
        vec!["policy", "lint", "--help"],
        vec!["policy", "diff", "--help"],
        vec!["policy", "explain", "--help"],
        vec!["policy", "test", "--help"],
        vec!["authorize", "--help"],
    ] {
        let out = partnerdb(&args, None);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
}

/// A fresh directory under the target directory (no extra crate for it).
fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "partnerdb-cli-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
