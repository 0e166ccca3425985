//! Credentials and callers: tokens are 192 random bits shown once, stored
//! only as their SHA-256, looked up by it; a bearer token becomes a
//! [`Caller`] whose roles are resolved against the policy version that
//! will decide the whole request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use partnerdb_policy::{Action, CompiledPolicy, Principal, ResourceType, RoleSet};
use partnerdb_store::principals::PrincipalRow;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// What every token starts with (so that secret scanners can find leaks).
pub const TOKEN_PREFIX: &str = "pdb_";

/// A new token: `pdb_` and 32 URL-safe characters (192 random bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The hash a token is stored and looked up by (hex SHA-256). Lookup by an
/// equality on the hash of a high-entropy token leaks nothing useful through
/// timing: learning a prefix of a hash does not help forge its preimage.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The part of a token kept for display.
pub fn token_display_prefix(token: &str) -> String {
    token.chars().take(TOKEN_PREFIX.len() + 6).collect()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Compares two secrets in constant time (for their length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An authenticated principal, for the duration of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub principal: PrincipalRow,
    /// The policy version deciding this request (one version per request).
    pub policy: Arc<CompiledPolicy>,
    /// That version's id, recorded with every audit event.
    pub policy_version: Arc<str>,
    /// The principal's roles, resolved against that version.
    pub roles: RoleSet,
    /// The active elevation the request carries (its token in
    /// `X-Partnerdb-Elevation`, with the principal's own bearer token).
    pub elevation: Option<Arc<ActiveElevation>>,
    /// The request, for the audit trail.
    pub request: RequestInfo,
    /// Set once a deny event is made for the request.
    denied: DenyMark,
}

/// Whether a deny event was made for a request: the HTTP layer records a
/// refusal of its own for the requests refused without one (a body, a
/// query, a header it could not take; a step that records none).
#[derive(Debug, Default)]
struct DenyMark(AtomicBool);

impl Clone for DenyMark {
    fn clone(&self) -> Self {
        DenyMark(AtomicBool::new(self.0.load(Ordering::Relaxed)))
    }
}

/// Whether a client's `x-request-id` looks like an id (1–64 of letters,
/// digits and `-_.:`), fit for logs and the audit trail. Text that begins
/// like a token (`pdb_`, `pde_`) is not: a token pasted where an id goes
/// must not be kept.
pub fn is_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        && !looks_like_token(id)
}

/// Whether text begins like an API or elevation token.
pub fn looks_like_token(text: &[u8]) -> bool {
    text.starts_with(TOKEN_PREFIX.as_bytes())
        || text.starts_with(crate::elevations::ELEVATION_PREFIX.as_bytes())
}

/// An approved, unexpired, unrevoked elevation presented with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveElevation {
    /// Its id.
    pub id: String,
    /// The high-risk permissions it unlocks.
    pub permissions: Vec<(ResourceType, Action)>,
    /// The one partner it is limited to, if any.
    pub partner_id: Option<String>,
    /// When it ends.
    pub expires_at: String,
}

/// The HTTP request behind a use case, as the audit trail records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The request id (`x-request-id`).
    pub id: String,
    /// The method.
    pub method: String,
    /// The route template (`/v1/partners/{id}`), not the concrete path.
    pub route: String,
}

impl Caller {
    /// A caller for `principal` under `policy` (version `version`).
    pub fn new(principal: PrincipalRow, policy: Arc<CompiledPolicy>, version: Arc<str>) -> Caller {
        let roles = policy.resolve_roles(principal.roles.iter().map(String::as_str));
        Caller {
            principal,
            policy,
            policy_version: version,
            roles,
            elevation: None,
            request: RequestInfo::default(),
            denied: DenyMark::default(),
        }
    }

    /// Whether a deny event was made for this request.
    pub fn deny_recorded(&self) -> bool {
        self.denied.0.load(Ordering::Relaxed)
    }

    /// Notes that a deny event was made for this request.
    pub(crate) fn mark_denied(&self) {
        self.denied.0.store(true, Ordering::Relaxed);
    }

    /// The principal as the engine sees it.
    pub fn engine(&self) -> Principal<'_> {
        Principal {
            id: &self.principal.id,
            roles: &self.roles,
            partner_id: self.principal.partner_id.as_deref(),
            attrs: &self.principal.attrs,
        }
    }

    /// Whether the request's elevation unlocks `action` on `kind` for
    /// `partner` (a record's partner; `None` for what belongs to no
    /// partner, which only an elevation for everything reaches).
    pub fn elevated_for(&self, kind: ResourceType, action: Action, partner: Option<&str>) -> bool {
        self.elevation.as_ref().is_some_and(|e| {
            e.permissions.contains(&(kind, action))
                && match (&e.partner_id, partner) {
                    (None, _) => true,
                    (Some(scope), Some(partner)) => scope == partner,
                    (Some(_), None) => false,
                }
        })
    }

    /// Whether the caller's roles allow `kind:action` on something that
    /// belongs to no partner: a check inside an operation that is decided
    /// and recorded on its own, not a decision to record.
    pub fn allows(&self, kind: ResourceType, action: Action) -> bool {
        self.policy
            .decide(&partnerdb_policy::Request {
                principal: self.engine(),
                action,
                resource: partnerdb_policy::Resource {
                    kind,
                    id: "*",
                    partner_id: None,
                    owner: None,
                    attrs: &partnerdb_policy::NoAttributes,
                },
                elevated: self.elevated_for(kind, action, None),
            })
            .allowed
    }

    /// Its attributes.
    pub fn attrs(&self) -> &BTreeMap<String, String> {
        &self.principal.attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 32);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
