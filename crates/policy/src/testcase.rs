//! Policy test files: named principals and records, and cases that state
//! the decision (and optionally the fields, matched grants or a part of the
//! deny reason) a policy must give. `partnerdb policy test` runs them, for
//! people and for CI.
//!
//! ```toml
//! policy = "starter.toml"            # relative to this file
//!
//! [principals.maria]                 # the key is the id unless `id` is given
//! roles = ["partner_manager"]
//! attrs = { region = "emea" }
//!
//! [resources.acme]
//! type = "partner"
//! partner_id = "acme"
//! owner = "maria"
//! attrs = { region = "emea" }
//!
//! [[case]]
//! name = "a manager reads the partners they own"
//! principal = "maria"                # a name above, or an inline table
//! action = "read"
//! resource = "acme"
//! expect = "allow"
//! fields = ["general"]               # optional: exact, in any order
//! matched = ["partner_manager#0"]    # optional: exact, in any order
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::engine::{CompiledPolicy, Principal, Request, Resource};
use crate::reader::{Item, Reader, get, parse_toml, span_of};
use crate::schema::{Action, FieldClass, FieldSet, ResourceType, suggest};

/// A parsed test file.
#[derive(Clone, Debug)]
pub struct TestFile {
    /// The `policy` path as written (relative to the test file), if any.
    pub policy: Option<String>,
    /// The cases, in file order.
    pub cases: Vec<TestCase>,
}

/// A principal of a test file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPrincipal {
    /// Its id.
    pub id: String,
    /// Its role names.
    pub roles: Vec<String>,
    /// Its partner.
    pub partner_id: Option<String>,
    /// Its attributes.
    pub attrs: BTreeMap<String, String>,
}

/// A record of a test file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResource {
    /// Its type.
    pub kind: ResourceType,
    /// Its id.
    pub id: String,
    /// Its partner.
    pub partner_id: Option<String>,
    /// Its partner's account manager.
    pub owner: Option<String>,
    /// Its attributes.
    pub attrs: BTreeMap<String, String>,
}

/// One case.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// What it checks, in words.
    pub name: String,
    /// Where it is.
    pub span: Span,
    /// Who asks.
    pub principal: TestPrincipal,
    /// What for.
    pub action: Action,
    /// About what.
    pub resource: TestResource,
    /// Whether the principal holds an elevation.
    pub elevated: bool,
    /// The expected decision.
    pub expect_allow: bool,
    /// The expected classes, if stated.
    pub fields: Option<FieldSet>,
    /// The expected matched grants, if stated (sorted).
    pub matched: Option<Vec<String>>,
    /// A text the deny reason must contain, if stated.
    pub reason_contains: Option<String>,
}

const TOP_KEYS: &[&str] = &["policy", "principals", "resources", "case"];
const PRINCIPAL_KEYS: &[&str] = &["id", "roles", "partner_id", "attrs"];
const RESOURCE_KEYS: &[&str] = &["type", "id", "partner_id", "owner", "attrs"];
const CASE_KEYS: &[&str] = &[
    "name",
    "principal",
    "action",
    "resource",
    "elevated",
    "expect",
    "fields",
    "matched",
    "reason_contains",
];

/// Parses a test file, reporting every error found.
pub fn parse_tests(source: &SourceFile) -> Result<TestFile, Vec<Diagnostic>> {
    let root = parse_toml(source)?;
    let root = root.get_ref();
    let mut r = Reader::default();
    r.unknown_keys(root, TOP_KEYS, "a test file");
    let policy = get(root, "policy")
        .and_then(|v| r.string(v, "\"policy\""))
        .map(str::to_owned);

    let mut principals = BTreeMap::new();
    if let Some(item) = get(root, "principals")
        && let Some(table) = r.table(item, "[principals]")
    {
        for (key, value) in table.iter() {
            if let Some(p) = read_principal(&mut r, value, Some(key.get_ref())) {
                principals.insert(key.get_ref().to_string(), p);
            }
        }
    }
    let mut resources = BTreeMap::new();
    if let Some(item) = get(root, "resources")
        && let Some(table) = r.table(item, "[resources]")
    {
        for (key, value) in table.iter() {
            if let Some(res) = read_resource(&mut r, value, Some(key.get_ref())) {
                resources.insert(key.get_ref().to_string(), res);
            }
        }
    }

    let mut cases = Vec::new();
    match get(root, "case") {
        Some(item) => {
            if let Some(items) = r.array(item, "[[case]]") {
                for item in items {
                    if let Some(case) = read_case(&mut r, item, &principals, &resources) {
                        cases.push(case);
                    }
                }
            }
        }
        None => r.error(
            "missing-key",
            "the test file has no [[case]]",
            Span::new(0, 0),
        ),
    }

    if r.diagnostics.is_empty() {
        Ok(TestFile { policy, cases })
    } else {
        r.diagnostics.sort_by_key(|d| d.span.map(|s| s.start));
        Err(r.diagnostics)
    }
}

fn read_attrs(r: &mut Reader, item: &Item<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(table) = r.table(item, "\"attrs\"") {
        for (key, value) in table.iter() {
            if let Some(text) = r.string(value, &format!("attribute \"{}\"", key.get_ref())) {
                out.insert(key.get_ref().to_string(), text.to_owned());
            }
        }
    }
    out
}

fn optional_string(r: &mut Reader, table: &toml::de::DeTable<'_>, key: &str) -> Option<String> {
    get(table, key)
        .and_then(|v| r.string(v, &format!("\"{key}\"")))
        .map(str::to_owned)
}

fn read_principal(r: &mut Reader, item: &Item<'_>, name: Option<&str>) -> Option<TestPrincipal> {
    let table = r.table(item, "a principal")?;
    r.unknown_keys(table, PRINCIPAL_KEYS, "a principal");
    let id = optional_string(r, table, "id").or(name.map(str::to_owned));
    let Some(id) = id else {
        r.error(
            "missing-key",
            "an inline principal needs an \"id\"",
            span_of(item),
        );
        return None;
    };
    let roles = match get(table, "roles") {
        Some(value) => r
            .strings(value, "\"roles\"")?
            .into_iter()
            .map(|(s, _)| s.to_owned())
            .collect(),
        None => Vec::new(),
    };
    Some(TestPrincipal {
        id,
        roles,
        partner_id: optional_string(r, table, "partner_id"),
        attrs: get(table, "attrs")
            .map(|v| read_attrs(r, v))
            .unwrap_or_default(),
    })
}

fn read_resource(r: &mut Reader, item: &Item<'_>, name: Option<&str>) -> Option<TestResource> {
    let table = r.table(item, "a resource")?;
    r.unknown_keys(table, RESOURCE_KEYS, "a resource");
    let Some(value) = get(table, "type") else {
        r.error("missing-key", "a resource needs a \"type\"", span_of(item));
        return None;
    };
    let text = r.string(value, "\"type\"")?;
    let Some(kind) = ResourceType::parse(text) else {
        let mut message = format!("unknown resource type \"{text}\"");
        if let Some(best) = suggest(text, ResourceType::ALL.iter().map(|r| r.name())) {
            message.push_str(&format!("; did you mean \"{best}\"?"));
        }
        r.error("unknown-resource", message, span_of(value));
        return None;
    };
    let id = optional_string(r, table, "id")
        .or(name.map(str::to_owned))
        .unwrap_or_default();
    Some(TestResource {
        kind,
        id,
        partner_id: optional_string(r, table, "partner_id"),
        owner: optional_string(r, table, "owner"),
        attrs: get(table, "attrs")
            .map(|v| read_attrs(r, v))
            .unwrap_or_default(),
    })
}

fn named<T: Clone>(
    r: &mut Reader,
    item: &Item<'_>,
    what: &str,
    known: &BTreeMap<String, T>,
) -> Option<T> {
    let name = r.string(item, &format!("\"{what}\""))?;
    match known.get(name) {
        Some(value) => Some(value.clone()),
        None => {
            let mut message = format!("no {what} named \"{name}\"");
            if let Some(best) = suggest(name, known.keys().map(String::as_str)) {
                message.push_str(&format!("; did you mean \"{best}\"?"));
            }
            r.error("unknown-name", message, span_of(item));
            None
        }
    }
}

fn read_case(
    r: &mut Reader,
    item: &Item<'_>,
    principals: &BTreeMap<String, TestPrincipal>,
    resources: &BTreeMap<String, TestResource>,
) -> Option<TestCase> {
    let table = r.table(item, "a case")?;
    let span = span_of(item);
    let errors_before = r.diagnostics.len();
    r.unknown_keys(table, CASE_KEYS, "a case");
    let name = optional_string(r, table, "name");

    let principal = match get(table, "principal") {
        Some(value) if value.get_ref().is_str() => named(r, value, "principal", principals),
        Some(value) => read_principal(r, value, None),
        None => {
            r.error("missing-key", "a case needs a \"principal\"", span);
            None
        }
    };
    let resource = match get(table, "resource") {
        Some(value) if value.get_ref().is_str() => named(r, value, "resource", resources),
        Some(value) => read_resource(r, value, None),
        None => {
            r.error("missing-key", "a case needs a \"resource\"", span);
            None
        }
    };
    let action = match get(table, "action") {
        Some(value) => r.string(value, "\"action\"").and_then(|text| {
            let action = Action::parse(text);
            match (&resource, action) {
                (Some(res), Some(a)) if res.kind.has_action(a) => Some(a),
                (None, _) => action,
                (Some(res), _) => {
                    let mut message = format!("{} has no action \"{text}\"", res.kind);
                    if let Some(best) =
                        suggest(text, res.kind.action_list().iter().map(|a| a.name()))
                    {
                        message.push_str(&format!("; did you mean \"{best}\"?"));
                    }
                    r.error("unknown-action", message, span_of(value));
                    None
                }
            }
        }),
        None => {
            r.error("missing-key", "a case needs an \"action\"", span);
            None
        }
    };
    let expect_allow = match get(table, "expect") {
        Some(value) => match r.string(value, "\"expect\"") {
            Some("allow") => Some(true),
            Some("deny") => Some(false),
            Some(other) => {
                r.error(
                    "invalid-value",
                    format!("\"expect\" must be \"allow\" or \"deny\", not \"{other}\""),
                    span_of(value),
                );
                None
            }
            None => None,
        },
        None => {
            r.error(
                "missing-key",
                "a case needs \"expect\" (\"allow\" or \"deny\")",
                span,
            );
            None
        }
    };
    let elevated = get(table, "elevated")
        .and_then(|v| r.boolean(v, "\"elevated\""))
        .unwrap_or(false);
    let fields = get(table, "fields").and_then(|value| {
        let names = r.strings(value, "\"fields\"")?;
        let mut set = FieldSet::EMPTY;
        for (name, span) in names {
            match FieldClass::parse(name) {
                Some(class) => set.insert(class),
                None => r.error(
                    "unknown-field-class",
                    format!("unknown field class \"{name}\""),
                    span,
                ),
            }
        }
        Some(set)
    });
    let matched = get(table, "matched").and_then(|value| {
        let mut names: Vec<String> = r
            .strings(value, "\"matched\"")?
            .into_iter()
            .map(|(s, _)| s.to_owned())
            .collect();
        names.sort();
        Some(names)
    });
    let reason_contains = optional_string(r, table, "reason_contains");
    if r.diagnostics.len() > errors_before {
        return None;
    }
    let (principal, resource, action, expect_allow) =
        (principal?, resource?, action?, expect_allow?);
    let name = name.unwrap_or_else(|| {
        format!(
            "{} {} {} {}",
            principal.id, action, resource.kind, resource.id
        )
    });
    Some(TestCase {
        name,
        span,
        principal,
        action,
        resource,
        elevated,
        expect_allow,
        fields,
        matched,
        reason_contains,
    })
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Where the case is.
    pub span: Span,
    /// Whether everything stated held.
    pub passed: bool,
    /// One line per stated expectation that failed: what, expected, actual.
    pub mismatches: Vec<Mismatch>,
}

/// An expectation that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// `decision`, `fields`, `matched` or `reason`.
    pub what: &'static str,
    /// What the case expected.
    pub expected: String,
    /// What the policy gave.
    pub actual: String,
}

/// Runs every case of a test file against a policy.
pub fn run_tests(policy: &CompiledPolicy, file: &TestFile) -> Vec<CaseResult> {
    file.cases
        .iter()
        .map(|case| run_case(policy, case))
        .collect()
}

fn run_case(policy: &CompiledPolicy, case: &TestCase) -> CaseResult {
    let roles = policy.resolve_roles(case.principal.roles.iter().map(String::as_str));
    let request = Request {
        principal: Principal {
            id: &case.principal.id,
            roles: &roles,
            partner_id: case.principal.partner_id.as_deref(),
            attrs: &case.principal.attrs,
        },
        action: case.action,
        resource: Resource {
            kind: case.resource.kind,
            id: &case.resource.id,
            partner_id: case.resource.partner_id.as_deref(),
            owner: case.resource.owner.as_deref(),
            attrs: &case.resource.attrs,
        },
        elevated: case.elevated,
    };
    let decision = policy.decide(&request);
    let reason = policy.deny_reason(&request, &decision);
    let kind = case.resource.kind;
    let word = |allowed: bool| if allowed { "allow" } else { "deny" };
    let mut mismatches = Vec::new();
    if decision.allowed != case.expect_allow {
        mismatches.push(Mismatch {
            what: "decision",
            expected: word(case.expect_allow).to_owned(),
            actual: match &reason {
                Some(reason) => format!("deny ({reason})"),
                None => "allow".to_owned(),
            },
        });
    }
    if let Some(fields) = case.fields
        && fields != decision.fields
    {
        mismatches.push(Mismatch {
            what: "fields",
            expected: class_list(fields, kind),
            actual: class_list(decision.fields, kind),
        });
    }
    if let Some(expected) = &case.matched {
        let mut actual: Vec<String> = decision
            .matched
            .iter()
            .map(|&g| policy.label(g).to_owned())
            .collect();
        actual.sort();
        if *expected != actual {
            mismatches.push(Mismatch {
                what: "matched",
                expected: format!("[{}]", expected.join(", ")),
                actual: format!("[{}]", actual.join(", ")),
            });
        }
    }
    if let Some(part) = &case.reason_contains {
        let holds = reason.as_deref().is_some_and(|r| r.contains(part.as_str()));
        if !holds {
            mismatches.push(Mismatch {
                what: "reason",
                expected: format!("a reason containing {part:?}"),
                actual: reason.unwrap_or_else(|| "no reason (allowed)".to_owned()),
            });
        }
    }
    CaseResult {
        name: case.name.clone(),
        span: case.span,
        passed: mismatches.is_empty(),
        mismatches,
    }
}

fn class_list(fields: FieldSet, kind: ResourceType) -> String {
    let names: Vec<&str> = fields.in_schema_order(kind).map(FieldClass::name).collect();
    format!("[{}]", names.join(", "))
}

/// A test run's results, rendered for people: one line per case, and for
/// each failure its location and an expected/actual diff.
#[derive(Debug)]
pub struct TestReport<'a> {
    /// The test file.
    pub source: &'a SourceFile,
    /// The results.
    pub results: &'a [CaseResult],
}

impl fmt::Display for TestReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut failed = 0;
        for result in self.results {
            if result.passed {
                writeln!(f, "ok    {}", result.name)?;
                continue;
            }
            failed += 1;
            let at = self.source.location(result.span.start);
            writeln!(
                f,
                "FAIL  {}\n      at {}:{}:{}",
                result.name,
                self.source.name(),
                at.line,
                at.column
            )?;
            for m in &result.mismatches {
                let mut block = String::new();
                let _ = writeln!(block, "      {}:", m.what);
                let _ = writeln!(block, "        - expected {}", m.expected);
                let _ = writeln!(block, "        + actual   {}", m.actual);
                f.write_str(&block)?;
            }
        }
        writeln!(
            f,
            "\n{} case{}: {} passed, {failed} failed",
            self.results.len(),
            if self.results.len() == 1 { "" } else { "s" },
            self.results.len() - failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_policy;

    fn policy() -> CompiledPolicy {
        let text = r#"
[roles.partner_manager]
grants = [ { on = "partner", can = ["read"], fields = ["general"], scope = "owned" } ]
"#;
        CompiledPolicy::compile(parse_policy(&SourceFile::new("p.toml", text)).unwrap())
    }

    const TESTS: &str = r#"
[principals.maria]
roles = ["partner_manager"]

[resources.acme]
type = "partner"
partner_id = "acme"
owner = "maria"

[[case]]
name = "owner reads"
principal = "maria"
action = "read"
resource = "acme"
expect = "allow"
fields = ["general"]
matched = ["partner_manager#0"]

[[case]]
name = "stranger reads"
principal = { id = "bob", roles = ["partner_manager"] }
action = "read"
resource = "acme"
expect = "allow"
fields = ["general", "financial"]
"#;

    #[test]
    fn runs_cases_and_reports_mismatches() {
        let source = SourceFile::new("t.toml", TESTS);
        let file = parse_tests(&source).unwrap();
        let results = run_tests(&policy(), &file);
        assert!(results[0].passed, "{:?}", results[0]);
        assert!(!results[1].passed);
        assert_eq!(results[1].mismatches[0].what, "decision");
        assert_eq!(
            results[1].mismatches[1],
            Mismatch {
                what: "fields",
                expected: "[general, financial]".into(),
                actual: "[]".into()
            }
        );
        let report = TestReport {
            source: &source,
            results: &results,
        }
        .to_string();
        assert!(
            report.contains("FAIL  stranger reads\n      at t.toml:19:1"),
            "{report}"
        );
        assert!(
            report.ends_with("2 cases: 1 passed, 1 failed\n"),
            "{report}"
        );
    }

    #[test]
    fn reports_errors_in_test_files() {
        let source = SourceFile::new(
            "t.toml",
            r#"
[principals.maria]
roles = ["partner_manager"]
[[case]]
principal = "mario"
action = "raed"
resource = { type = "partner", id = "p" }
expect = "allowed"
"#,
        );
        let messages: Vec<String> = parse_tests(&source)
            .unwrap_err()
            .into_iter()
            .map(|d| d.message)
            .collect();
        assert_eq!(
            messages,
            [
                "no principal named \"mario\"; did you mean \"maria\"?",
                "partner has no action \"raed\"; did you mean \"read\"?",
                "\"expect\" must be \"allow\" or \"deny\", not \"allowed\"",
            ]
        );
    }
}
