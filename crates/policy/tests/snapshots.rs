//! Snapshot tests of what people read: check errors and lint findings,
//! rendered exactly as the CLI prints them. Refresh with
//! `INSTA_UPDATE=always cargo test -p partnerdb-policy --test snapshots`
//! and review the diff.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use partnerdb_policy::diagnostic::Report;
use partnerdb_policy::lint::lint;
use partnerdb_policy::{SourceFile, parse_policy};

fn check(name: &str, text: &str) -> String {
    let source = SourceFile::new(format!("{name}.toml"), text);
    match parse_policy(&source) {
        Ok(_) => "ok\n".to_owned(),
        Err(diagnostics) => Report {
            source: &source,
            diagnostics: &diagnostics,
        }
        .to_string(),
    }
}

fn lint_text(name: &str, text: &str) -> String {
    let source = SourceFile::new(format!("{name}.toml"), text);
    let policy = parse_policy(&source).expect("lint fixtures must check");
    Report {
        source: &source,
        diagnostics: &lint(&policy),
    }
    .to_string()
}

#[test]
fn check_errors() {
    let cases = [
        (
            "typos",
            r#"[policy]
nmae = "acme"

[roles.partner_manager]
description = "Manages partner accounts"
grants = [
  { on = "contract", can = ["read", "aprove"], fields = ["general", "financal"] },
  { on = "partners", can = ["read"], fields = ["general"], scope = "own" },
]
"#,
        ),
        (
            "schema",
            r#"[roles.analyst]
description = "Reads metrics"
grants = [
  { on = "metrics", can = ["read", "export"] },
  { on = "partner", can = ["read"], fields = ["pii"] },
  { on = "system", can = ["backup"], scope = "owned" },
  { on = "*", can = ["trigger"], when = { region = "emea" } },
  { on = "partner", can = [] },
  { can = ["read"] },
]
"#,
        ),
        (
            "types",
            r#"[policy]
min_admins = "two"
elevation_max_ttl = "forever"

[roles.x]
superuser = "yes"
grants = { on = "partner" }

[roles.Bad-Name]
grants = []

[[separation_of_duties]]
name = "pairs"
conflicting = ["contract:propose", "contract:*"]

[high_risk]
permissions = ["partner:remove", "export"]
"#,
        ),
        (
            "syntax",
            "[roles.x]\ngrants = [ { on = \"partner\", can = [\"read\"] \n",
        ),
        (
            "conditions",
            r#"[roles.regional]
description = "Regional finance"
grants = [
  { on = "partner", can = ["read"], fields = ["general"], when = { region = "$principal" } },
  { on = "partner", can = ["read"], fields = ["general"], when = { region = 5 } },
  { on = "partner", can = ["read"], fields = ["general"], when = {} },
]
"#,
        ),
    ];
    for (name, text) in cases {
        insta::assert_snapshot!(format!("check_{name}"), check(name, text));
    }
}

#[test]
fn lint_findings() {
    let cases = [
        (
            "risky",
            r#"[policy]
name = "risky"

[roles.ops]
description = "Does everything"
grants = [ { on = "*", can = ["*"] } ]

[roles.manager]
description = "Manages and approves"
grants = [
  { on = "contract", can = ["read", "propose", "approve"], fields = ["general"], scope = "owned" },
  { on = "contract", can = ["read"], fields = ["general"], scope = "owned" },
  { on = "contact", can = ["read"] },
]

[roles.manager_copy]
description = "Same as manager"
grants = [
  { on = "contract", can = ["read", "propose", "approve"], fields = ["general"], scope = "owned" },
  { on = "contact", can = ["read"], fields = ["general", "pii"] },
]

[roles.api_client]
description = "Partner systems"
grants = [
  { on = "partner", can = ["read"], fields = ["general"] },
  { on = "audit", can = ["read"] },
]

[[separation_of_duties]]
name = "contract maker-checker"
conflicting = ["contract:propose", "contract:approve"]

[high_risk]
permissions = ["partner:delete"]
"#,
        ),
        (
            "no_admin",
            r#"[roles.reader]
description = "Reads partners"
grants = [ { on = "partner", can = ["read"], fields = ["general"], when = { tier = "$principal.tier", regoin = "emea" } } ]
"#,
        ),
    ];
    for (name, text) in cases {
        insta::assert_snapshot!(format!("lint_{name}"), lint_text(name, text));
    }
}

#[test]
fn the_starter_policy_lints_clean_but_for_its_superuser() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policies/starter.toml"
    ))
    .unwrap();
    insta::assert_snapshot!("lint_starter", lint_text("starter", &text));
}
