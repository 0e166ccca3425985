//! The batch-decision format of PRODUCT.md: one JSON request a line in, one
//! JSON decision a line out.
//!
//! ```json
//! {"principal":{"id":"u1","roles":["partner_manager"],"partner_id":null,"attrs":{"region":"emea"}},
//!  "action":"read","resource":{"type":"partner","id":"p7","partner_id":"p7","owner":"u1","attrs":{"region":"emea"}},
//!  "elevated":false}
//! ```
//! answers `{"decision":"allow","fields":["general"],"matched":["partner_manager#0"]}`
//! or `{"decision":"deny","reason":"…"}`; a line that is not a valid request
//! answers `{"error":"…"}`. Missing `elevated`, `attrs`, `owner` and
//! `partner_id` mean false, empty and null; unknown keys are ignored.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use smallvec::SmallVec;

use crate::engine::{Attributes, CompiledPolicy, Decision, Principal, Request, Resource, RoleSet};
use crate::schema::{Action, ResourceType};

/// A request line as written, borrowing from the line where it can.
#[derive(Debug, Deserialize)]
pub struct RawRequest<'a> {
    /// Who.
    #[serde(borrow)]
    pub principal: RawPrincipal<'a>,
    /// The action's name.
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    /// The record.
    #[serde(borrow)]
    pub resource: RawResource<'a>,
    /// Whether the principal holds an active elevation for this permission.
    #[serde(default)]
    pub elevated: bool,
}

/// The principal of a request line.
#[derive(Debug, Deserialize)]
pub struct RawPrincipal<'a> {
    /// Its id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Its role names.
    #[serde(borrow, default)]
    pub roles: SmallVec<[Text<'a>; 2]>,
    /// Its partner, for partner-bound principals.
    #[serde(borrow, default)]
    pub partner_id: Option<Cow<'a, str>>,
    /// Its attributes.
    #[serde(borrow, default)]
    pub attrs: AttrMap<'a>,
}

/// The record of a request line.
#[derive(Debug, Deserialize)]
pub struct RawResource<'a> {
    /// Its type's name.
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    /// Its id.
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    /// Its partner.
    #[serde(borrow, default)]
    pub partner_id: Option<Cow<'a, str>>,
    /// Its partner's account manager.
    #[serde(borrow, default)]
    pub owner: Option<Cow<'a, str>>,
    /// Its attributes.
    #[serde(borrow, default)]
    pub attrs: AttrMap<'a>,
}

impl RawRequest<'_> {
    /// The engine's view of this request, with the principal's roles
    /// resolved (by the caller, against the deciding policy) into `roles`.
    pub fn request<'r>(
        &'r self,
        roles: &'r RoleSet,
        kind: ResourceType,
        action: Action,
    ) -> Request<'r> {
        Request {
            principal: Principal {
                id: &self.principal.id,
                roles,
                partner_id: self.principal.partner_id.as_deref(),
                attrs: &self.principal.attrs,
            },
            action,
            resource: Resource {
                kind,
                id: &self.resource.id,
                partner_id: self.resource.partner_id.as_deref(),
                owner: self.resource.owner.as_deref(),
                attrs: &self.resource.attrs,
            },
            elevated: self.elevated,
        }
    }

    /// The principal's role names.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.principal.roles.iter().map(|r| &**r)
    }
}

/// A string borrowed from the line unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// String attributes; a `null` value counts as missing.
#[derive(Debug, Default)]
pub struct AttrMap<'a>(pub SmallVec<[(Text<'a>, Text<'a>); 2]>);

impl Attributes for AttrMap<'_> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| &**key == name)
            .map(|(_, value)| &**value)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AttrMap<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttrVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for AttrVisitor<'a> {
            type Value = AttrMap<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string attributes")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AttrMap::default())
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = SmallVec::new();
                while let Some(key) = map.next_key::<Text<'a>>()? {
                    let value: Option<Text<'a>> = map.next_value()?;
                    if let Some(value) = value {
                        out.push((key, value));
                    }
                }
                Ok(AttrMap(out))
            }
        }

        deserializer.deserialize_any(AttrVisitor(std::marker::PhantomData))
    }
}

/// Why a line is not a valid request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    /// Not JSON of the request's shape.
    #[error("invalid request: {0}")]
    Json(String),
    /// The resource type does not exist.
    #[error("unknown resource type `{0}`")]
    UnknownResource(String),
    /// The resource type has no such action.
    #[error("{resource} has no action `{action}`")]
    UnknownAction {
        /// The resource type.
        resource: ResourceType,
        /// The action as written.
        action: String,
    },
}

/// Parses a request line and resolves its names against the schema.
#[inline]
pub fn parse_line(line: &str) -> Result<(RawRequest<'_>, ResourceType, Action), LineError> {
    let raw: RawRequest<'_> =
        serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
    let kind = ResourceType::parse(&raw.resource.kind)
        .ok_or_else(|| LineError::UnknownResource(raw.resource.kind.to_string()))?;
    let action = Action::parse(&raw.action)
        .filter(|&a| kind.has_action(a))
        .ok_or_else(|| LineError::UnknownAction {
            resource: kind,
            action: raw.action.to_string(),
        })?;
    Ok((raw, kind, action))
}

/// Decides request lines against one policy, reusing its buffers from line
/// to line.
#[derive(Debug)]
pub struct BatchDecider<'p> {
    policy: &'p CompiledPolicy,
    reason: String,
}

impl<'p> BatchDecider<'p> {
    /// A decider for `policy`.
    pub fn new(policy: &'p CompiledPolicy) -> BatchDecider<'p> {
        BatchDecider {
            policy,
            reason: String::new(),
        }
    }

    /// Decides one request line and appends its answer line (with `\n`) to
    /// `out`. A line that is not a valid request appends nothing and says
    /// why (the caller writes the `{"error": …}` line, see [`write_error`]).
    pub fn decide_line(&mut self, line: &str, out: &mut Vec<u8>) -> Result<(), LineError> {
        let (raw, kind, action) = parse_line(line)?;
        let roles = self.policy.resolve_roles(raw.role_names());
        let request = raw.request(&roles, kind, action);
        let decision = self.policy.decide(&request);
        self.write_decision(&request, &decision, out);
        Ok(())
    }

    /// Appends a decision line in the batch format.
    pub fn write_decision(
        &mut self,
        request: &Request<'_>,
        decision: &Decision,
        out: &mut Vec<u8>,
    ) {
        if decision.allowed {
            out.extend_from_slice(b"{\"decision\":\"allow\",\"fields\":[");
            for (i, class) in decision
                .fields
                .in_schema_order(request.resource.kind)
                .enumerate()
            {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(class.name().as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b"],\"matched\":[");
            for (i, &grant) in decision.matched.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Labels are `role#index` with checked role names: nothing
                // to escape.
                out.push(b'"');
                out.extend_from_slice(self.policy.label(grant).as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b"]}\n");
        } else {
            out.extend_from_slice(b"{\"decision\":\"deny\",\"reason\":");
            self.reason.clear();
            // Writing into a String cannot fail.
            let _ = self
                .policy
                .write_deny_reason(request, decision, &mut self.reason);
            write_json_string(&self.reason, out);
            out.extend_from_slice(b"}\n");
        }
    }
}

/// Decides one request line and appends its answer line (with `\n`) to
/// `out`: the decision, or `{"error": …}` for a line that is not a valid
/// request (then returns false). For many lines, keep a [`BatchDecider`].
pub fn decide_line(policy: &CompiledPolicy, line: &str, out: &mut Vec<u8>) -> bool {
    match BatchDecider::new(policy).decide_line(line, out) {
        Ok(()) => true,
        Err(error) => {
            write_error(&error.to_string(), out);
            false
        }
    }
}

/// Appends an `{"error": …}` line.
pub fn write_error(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"error\":");
    write_json_string(message, out);
    out.extend_from_slice(b"}\n");
}

fn write_json_string(text: &str, out: &mut Vec<u8>) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;
    use crate::parse::parse_policy;

    fn policy() -> CompiledPolicy {
        let text = r#"
[roles.partner_manager]
grants = [ { on = "partner", can = ["read", "update"], fields = ["general"], scope = "owned" } ]
[roles.analyst]
grants = [ { on = "metrics", can = ["read"] } ]
"#;
        CompiledPolicy::compile(parse_policy(&SourceFile::new("p.toml", text)).unwrap())
    }

    fn answer(line: &str) -> (bool, String) {
        let mut out = Vec::new();
        let ok = decide_line(&policy(), line, &mut out);
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn answers_in_the_product_format() {
        let line = r#"{"principal":{"id":"u1","roles":["partner_manager"],"partner_id":null,"attrs":{"region":"emea"}},"action":"read","resource":{"type":"partner","id":"p7","partner_id":"p7","owner":"u1","attrs":{"region":"emea"}},"elevated":false}"#;
        assert_eq!(
            answer(line),
            (
                true,
                "{\"decision\":\"allow\",\"fields\":[\"general\"],\"matched\":[\"partner_manager#0\"]}\n".into()
            )
        );
        let line = r#"{"principal":{"id":"u1","roles":["analyst"]},"action":"read","resource":{"type":"partner","id":"p7"}}"#;
        assert_eq!(
            answer(line),
            (
                true,
                "{\"decision\":\"deny\",\"reason\":\"no grant of roles [analyst] covers partner:read\"}\n".into()
            )
        );
    }

    #[test]
    fn invalid_lines_answer_an_error() {
        for (line, expected) in [
            ("not json", "invalid request"),
            (
                r#"{"principal":{"id":"u"},"action":"read","resource":{"type":"partnr"}}"#,
                "unknown resource type `partnr`",
            ),
            (
                r#"{"principal":{"id":"u"},"action":"refund","resource":{"type":"partner"}}"#,
                "partner has no action `refund`",
            ),
            (
                r#"{"principal":{"id":"u","attrs":{"n":1}},"action":"read","resource":{"type":"partner"}}"#,
                "invalid request",
            ),
        ] {
            let (ok, out) = answer(line);
            assert!(!ok, "{line}");
            assert!(
                out.starts_with("{\"error\":") && out.contains(expected),
                "{out}"
            );
        }
    }

    #[test]
    fn escapes_reasons() {
        let line = r#"{"principal":{"id":"u\"1","roles":["partner_manager"]},"action":"read","resource":{"type":"partner","id":"p\n7","owner":"x"}}"#;
        let (_, out) = answer(line);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(value["reason"].as_str().unwrap().contains("p\n7"));
    }
}
