//! partnerdb's use cases: authenticate a bearer token, decide every request
//! with the compiled policy, read and write records with field masking and
//! row scopes, manage principals, role bindings and credentials.
//!
//! **Architecture invariants:** this crate knows nothing of HTTP (it takes
//! and returns plain values and `serde_json` trees); every use case decides
//! before it reads or writes; a request is decided by exactly one policy
//! version (the [`auth::Caller`] holds it); a change and its checks run in
//! one database transaction.

pub mod audit;
pub mod auth;
pub mod changes;
pub mod codec;
pub mod cursor;
pub mod demo;
pub mod elevations;
pub mod error;
pub mod me;
pub mod metrics;
pub mod policies;
pub mod principals;
pub mod records;
pub mod trail;
pub mod workflows;

use std::sync::Arc;

use arc_swap::ArcSwap;
use partnerdb_policy::{CompiledPolicy, SourceFile, parse_policy};
use partnerdb_store::{Db, principals as store_principals};
use rand::RngCore as _;

pub use auth::Caller;
pub use error::ServiceError;

/// The starter policy, shipped in the binary.
pub const STARTER_POLICY: &str = include_str!("../../../policies/starter.toml");

/// Where time comes from: the system clock, or a test's.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<jiff::Timestamp>);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: jiff::Timestamp) -> ManualClock {
        ManualClock(std::sync::Mutex::new(at))
    }

    /// Moves it forward.
    pub fn advance(&self, by: jiff::SignedDuration) {
        if let Ok(mut now) = self.0.lock() {
            *now = now.checked_add(by).unwrap_or(*now);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        self.0
            .lock()
            .map_or_else(|_| jiff::Timestamp::now(), |now| *now)
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] partnerdb_store::StoreError),
    /// The database holds no policy: it was not initialised.
    #[error("the database has no policy: run `partnerdb init` (or `serve --demo`) first")]
    NotInitialised,
    /// The stored policy does not check.
    #[error("the stored policy does not pass check:\n{0}")]
    InvalidPolicy(String),
    /// A stored setting is corrupt.
    #[error("stored setting `{0}` is corrupt")]
    CorruptSetting(&'static str),
}

/// The running service: a database, the active policy and the keys.
#[derive(Debug)]
pub struct Service {
    db: Db,
    policy: ArcSwap<ActivePolicy>,
    clock: Arc<dyn Clock>,
    cursors: cursor::CursorKey,
    auth_cache: AuthCache,
    audit: audit::AuditWriter,
}

/// The policy version in force, compiled.
#[derive(Debug)]
pub struct ActivePolicy {
    /// Compiled.
    pub compiled: Arc<CompiledPolicy>,
    /// Its id: the first 16 hex digits of the SHA-256 of its text.
    pub version: Arc<str>,
    /// Its number among the stored versions (a server only ever moves to
    /// a higher one).
    pub number: i64,
}

/// A policy's version id: the first 16 hex digits of its text's SHA-256.
pub fn policy_version(text: &str) -> String {
    use sha2::Digest as _;
    auth::hex(&sha2::Sha256::digest(text.as_bytes()))[..16].to_owned()
}

/// How long a token's lookup is reused. Changes made through this server
/// (revocation, unbinding, deletion) clear the cache at once; changes made
/// through another server sharing the database reach this one within this
/// time. Expiry is checked on every request against the clock.
pub const AUTH_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
const AUTH_CACHE_MAX: usize = 10_000;

/// Recent token lookups, by token hash.
#[derive(Debug, Default)]
struct AuthCache {
    entries: std::sync::Mutex<CacheEntries>,
}

/// The cached lookups, and how many times they were cleared: a lookup
/// read from the database before a clearing is not put back after it.
#[derive(Debug, Default)]
struct CacheEntries {
    generation: u64,
    map: std::collections::HashMap<String, (jiff::Timestamp, store_principals::Authenticated)>,
}

impl AuthCache {
    fn fresh(at: jiff::Timestamp, now: jiff::Timestamp) -> bool {
        now.duration_since(at) < jiff::SignedDuration::try_from(AUTH_CACHE_TTL).unwrap_or_default()
            && at <= now
    }

    /// A cached lookup; else the generation to hand to [`AuthCache::put`]
    /// with what the database says.
    fn get(
        &self,
        hash: &str,
        now: jiff::Timestamp,
    ) -> Result<store_principals::Authenticated, u64> {
        let Ok(entries) = self.entries.lock() else {
            return Err(u64::MAX);
        };
        match entries.map.get(hash) {
            Some((at, found)) if Self::fresh(*at, now) => Ok(found.clone()),
            _ => Err(entries.generation),
        }
    }

    /// Caches a lookup read while the cache was at `generation`: not if it
    /// was cleared since (a revocation committed meanwhile must not be
    /// undone by the row read before it).
    fn put(
        &self,
        hash: String,
        found: store_principals::Authenticated,
        now: jiff::Timestamp,
        generation: u64,
    ) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.generation != generation {
                return;
            }
            if entries.map.len() >= AUTH_CACHE_MAX {
                entries.map.retain(|_, (at, _)| Self::fresh(*at, now));
                if entries.map.len() >= AUTH_CACHE_MAX {
                    entries.map.clear();
                }
            }
            entries.map.insert(hash, (now, found));
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.map.clear();
            entries.generation = entries.generation.wrapping_add(1);
        }
    }
}

/// Settings names.
const POLICY_SETTING: &str = "policy";
const CURSOR_KEY_SETTING: &str = "cursor_key";

/// Checks and compiles a policy text.
pub fn compile(text: &str) -> Result<CompiledPolicy, OpenError> {
    let source = SourceFile::new("stored policy", text);
    parse_policy(&source)
        .map(CompiledPolicy::compile)
        .map_err(|diagnostics| {
            OpenError::InvalidPolicy(
                partnerdb_policy::diagnostic::Report {
                    source: &source,
                    diagnostics: &diagnostics,
                }
                .to_string(),
            )
        })
}

impl Service {
    /// Opens the service on a migrated, initialised database, and starts
    /// the audit writer, the trail's indexer (and checkpointer, with a
    /// key). Call from within a Tokio runtime.
    pub async fn open(
        db: Db,
        clock: Arc<dyn Clock>,
        config: audit::AuditConfig,
    ) -> Result<Service, OpenError> {
        let setting = store_principals::setting(&db, POLICY_SETTING)
            .await?
            .ok_or(OpenError::NotInitialised)?;
        policies::adopt_unversioned(&db, &setting).await?;
        // The active version's number and text, read together (an
        // activation elsewhere between two reads would pair them wrongly).
        let active = partnerdb_store::policies::active_version(&db).await?;
        let (number, text) = active.map_or((1, setting), |v| (v.number, v.content));
        let policy = compile(&text)?;
        let key = store_principals::setting(&db, CURSOR_KEY_SETTING)
            .await?
            .ok_or(OpenError::NotInitialised)?;
        let cursors = cursor::CursorKey::from_hex(&key)
            .ok_or(OpenError::CorruptSetting(CURSOR_KEY_SETTING))?;
        if let Some(key) = &config.key {
            tokio::spawn(audit::checkpointer(
                db.clone(),
                key.clone(),
                config.checkpoint_every,
                config.checkpoint_interval,
                clock.clone(),
            ));
        }
        tokio::spawn(audit::indexer(db.clone(), config.index_interval));
        #[allow(unused_mut)]
        let mut writer =
            audit::AuditWriter::start(db.clone(), config.max_batch, config.read_durability);
        #[cfg(feature = "bench-bare")]
        {
            writer.bench_unaudited = config.bench_unaudited;
        }
        Ok(Service {
            audit: writer,
            db,
            policy: ArcSwap::from_pointee(ActivePolicy {
                compiled: Arc::new(policy),
                version: policy_version(&text).into(),
                number,
            }),
            clock,
            cursors,
            auth_cache: AuthCache::default(),
        })
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The active policy (a snapshot: one request keeps one version).
    pub fn policy(&self) -> Arc<CompiledPolicy> {
        self.policy.load().compiled.clone()
    }

    /// The active policy's version id.
    pub fn policy_version(&self) -> Arc<str> {
        self.policy.load().version.clone()
    }

    pub(crate) fn audit_writer(&self) -> &audit::AuditWriter {
        &self.audit
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn cursors(&self) -> &cursor::CursorKey {
        &self.cursors
    }

    /// Now, as stored.
    pub fn now_text(&self) -> String {
        partnerdb_store::format_time(self.clock.now())
    }

    /// Now plus `seconds` (negative for the past), as stored.
    pub fn time_text(&self, seconds: i64) -> String {
        let at = self
            .clock
            .now()
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or_else(|_| self.clock.now());
        partnerdb_store::format_time(at)
    }

    /// Forgets cached token lookups (after a change to principals, role
    /// bindings or credentials).
    pub(crate) fn principals_changed(&self) {
        self.auth_cache.clear();
    }

    /// The caller a bearer token stands for: its credential must exist, be
    /// neither revoked nor expired, and its principal not deleted.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ServiceError> {
        self.authenticate_request(token, auth::RequestInfo::default())
            .await
    }

    /// [`Service::authenticate`] for a request: the caller carries the
    /// request's id, method and route. A revoked or expired credential of
    /// a principal that exists is refused with an event (who presented
    /// which credential, and why it no longer works); a token that names
    /// no credential is refused without one (it names no principal, and
    /// anyone could fill the trail with such requests).
    pub async fn authenticate_request(
        &self,
        token: &str,
        request: auth::RequestInfo,
    ) -> Result<Caller, ServiceError> {
        if !token.starts_with(auth::TOKEN_PREFIX) || token.len() > 128 {
            return Err(ServiceError::Unauthenticated("invalid token"));
        }
        let hash = auth::token_hash(token);
        let now = self.clock.now();
        let found = match self.auth_cache.get(&hash, now) {
            Ok(found) => found,
            Err(generation) => {
                let found = store_principals::authenticate(&self.db, &hash)
                    .await?
                    .ok_or(ServiceError::Unauthenticated("invalid token"))?;
                self.auth_cache.put(hash, found.clone(), now, generation);
                found
            }
        };
        let refused = if found.credential.revoked_at.is_some() {
            Some("token revoked")
        } else if found
            .credential
            .expires_at
            .as_ref()
            .is_some_and(|expires| *expires <= self.now_text())
        {
            Some("token expired")
        } else {
            None
        };
        let active = self.policy.load();
        let mut caller = Caller::new(
            found.principal,
            active.compiled.clone(),
            active.version.clone(),
        );
        caller.request = request;
        if let Some(why) = refused {
            let credential = found.credential.id.as_str();
            let event = self.event(
                &caller,
                audit::Draft {
                    kind: "decision",
                    action: "authenticate",
                    resource_type: "credential",
                    resource_id: Some(credential),
                    partner_id: caller.principal.partner_id.as_deref(),
                    decision: &audit::service_refusal(),
                    reason: Some(why.to_owned()),
                    input: audit::input(
                        &caller,
                        "authenticate",
                        audit::Target::Object("credential", Some(credential)),
                        false,
                    ),
                    extra: serde_json::json!({}),
                },
            );
            self.record(event).await?;
            return Err(ServiceError::Unauthenticated(why));
        }
        Ok(caller)
    }
}

/// Prepares an empty, migrated database: stores the policy and a fresh
/// cursor key, and creates the first administrator with a token (returned,
/// to be shown once). Fails if the database is already initialised.
pub async fn bootstrap(
    db: &Db,
    policy_text: &str,
    admin_name: &str,
    clock: &dyn Clock,
) -> Result<principals::NewCredential, BootstrapError> {
    let policy = compile(policy_text).map_err(BootstrapError::Open)?;
    let admin_role = policy
        .policy()
        .roles
        .iter()
        .find(|role| {
            partnerdb_policy::effective::Effective::of_role(role).holds(
                partnerdb_policy::Permission {
                    resource: partnerdb_policy::ResourceType::Policy,
                    action: partnerdb_policy::Action::Apply,
                },
            )
        })
        .map(|role| role.name.clone())
        .ok_or(BootstrapError::NoAdminRole)?;
    let now = partnerdb_store::format_time(clock.now());
    let mut tx = db.begin().await.map_err(OpenError::from)?;
    if !store_principals::insert_setting(&mut tx, POLICY_SETTING, policy_text)
        .await
        .map_err(OpenError::from)?
    {
        return Err(BootstrapError::AlreadyInitialised);
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    store_principals::insert_setting(&mut tx, CURSOR_KEY_SETTING, &auth::hex(&key))
        .await
        .map_err(OpenError::from)?;
    let admin = store_principals::PrincipalRow {
        id: partnerdb_store::new_id(),
        kind: "user".into(),
        name: admin_name.into(),
        partner_id: None,
        attrs: Default::default(),
        created_at: now.clone(),
        roles: vec![admin_role.clone()],
    };
    store_principals::insert(&mut tx, &admin)
        .await
        .map_err(OpenError::from)?;
    store_principals::bind_role(&mut tx, &admin.id, &admin_role, &now, None)
        .await
        .map_err(OpenError::from)?;
    let expires = clock
        .now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 365))
        .ok()
        .map(partnerdb_store::format_time);
    let credential = principals::issue_credential(&mut tx, &admin.id, &now, expires)
        .await
        .map_err(OpenError::from)?;
    // The chain starts with the policy and the first administrator.
    let version = policy_version(policy_text);
    partnerdb_store::policies::insert(
        &mut tx,
        &partnerdb_store::policies::PolicyVersionRow {
            number: 1,
            hash: version.clone(),
            content: policy_text.to_owned(),
            author: "bootstrap".into(),
            message: "initial policy (partnerdb init)".into(),
            state: "active".into(),
            approved_by: None,
            rollback_of: None,
            based_on: None,
            created_at: now.clone(),
            decided_at: Some(now.clone()),
        },
    )
    .await
    .map_err(OpenError::from)?;
    let system_event =
        |kind: &str, action: &str, resource_type: &str, id: &str, detail: serde_json::Value| {
            partnerdb_store::audit::NewEvent {
                at: now.clone(),
                kind: kind.to_owned(),
                principal_id: None,
                action: action.to_owned(),
                resource_type: resource_type.to_owned(),
                resource_id: Some(id.to_owned()),
                partner_id: None,
                decision: "allow".to_owned(),
                policy_version: version.clone(),
                detail: detail.to_string(),
                matched: Vec::new(),
            }
        };
    let events = [
        system_event(
            "policy",
            "apply",
            "policy",
            &version,
            serde_json::json!({"by": "bootstrap", "name": policy.policy().name, "version": version, "roles": policy.policy().roles.len()}),
        ),
        system_event(
            "principal",
            "create",
            "principal",
            &admin.id,
            serde_json::json!({"by": "bootstrap", "principal": {"kind": "user", "roles": [admin_role]}, "credential": credential.id, "issued": true}),
        ),
    ];
    partnerdb_store::audit::append(&mut tx, events.into())
        .await
        .map_err(OpenError::from)?;
    tx.commit().await.map_err(OpenError::from)?;
    Ok(credential)
}

/// Why a database could not be initialised.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The policy or database failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The database already holds a policy.
    #[error("the database is already initialised")]
    AlreadyInitialised,
    /// No role of the policy can apply policies.
    #[error("no role of the policy holds policy:apply, so there could be no administrator")]
    NoAdminRole,
}

#[cfg(test)]
mod auth_cache_tests {
    use super::*;

    fn found(revoked: bool) -> store_principals::Authenticated {
        store_principals::Authenticated {
            principal: store_principals::PrincipalRow {
                id: "p".into(),
                kind: "user".into(),
                name: "n".into(),
                partner_id: None,
                attrs: Default::default(),
                created_at: "2026-01-01T00:00:00.000000Z".into(),
                roles: vec!["admin".into()],
            },
            credential: store_principals::CredentialRow {
                id: "c".into(),
                principal_id: "p".into(),
                prefix: "pdb_x".into(),
                created_at: "2026-01-01T00:00:00.000000Z".into(),
                expires_at: None,
                revoked_at: revoked.then(|| "2026-01-01T00:00:01.000000Z".into()),
            },
        }
    }

    /// A lookup read before a clearing (a revocation committed while it
    /// was read) is not cached after it; one read after is.
    #[test]
    fn a_lookup_read_before_a_clearing_is_not_cached_after_it() {
        let cache = AuthCache::default();
        let now = jiff::Timestamp::now();
        let Err(before) = cache.get("h", now) else {
            panic!("empty cache");
        };
        cache.clear();
        cache.put("h".into(), found(false), now, before);
        let Err(after) = cache.get("h", now) else {
            panic!("the stale lookup must not be cached");
        };
        assert_ne!(before, after);
        cache.put("h".into(), found(true), now, after);
        let cached = cache.get("h", now).expect("cached");
        assert!(cached.credential.revoked_at.is_some());
    }
}
