//! Principals, their role bindings and their credentials (stored only as
//! the SHA-256 of the token, looked up by it).

use std::collections::BTreeMap;

use crate::StoreError;
use crate::sql::{Db, Row, Tx};

/// A user or a partner-bound API client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalRow {
    /// Its id.
    pub id: String,
    /// `user` or `api_client`.
    pub kind: String,
    /// Display name.
    pub name: String,
    /// The partner an API client belongs to.
    pub partner_id: Option<String>,
    /// Attributes (`$principal.<attr>` in policies).
    pub attrs: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: String,
    /// Its roles, sorted.
    pub roles: Vec<String>,
}

/// A credential's metadata (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRow {
    /// Its id.
    pub id: String,
    /// The principal it authenticates.
    pub principal_id: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: String,
    /// When it stops working.
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

const PRINCIPAL_COLUMNS: &str = "id, kind, name, partner_id, attrs, created_at";

fn principal_from_row(row: &Row) -> PrincipalRow {
    PrincipalRow {
        id: row.text(0),
        kind: row.text(1),
        name: row.text(2),
        partner_id: row.opt_text(3),
        attrs: serde_json::from_str(&row.text(4)).unwrap_or_default(),
        created_at: row.text(5),
        roles: Vec::new(),
    }
}

const CREDENTIAL_COLUMNS: &str = "id, principal_id, prefix, created_at, expires_at, revoked_at";

fn credential_from_row(row: &Row) -> CredentialRow {
    CredentialRow {
        id: row.text(0),
        principal_id: row.text(1),
        prefix: row.text(2),
        created_at: row.text(3),
        expires_at: row.opt_text(4),
        revoked_at: row.opt_text(5),
    }
}

/// Creates a principal (without roles).
pub async fn insert(tx: &mut Tx, principal: &PrincipalRow) -> Result<(), StoreError> {
    let attrs = serde_json::to_string(&principal.attrs).unwrap_or_else(|_| "{}".to_owned());
    let mut sql = tx.sql();
    sql.push("INSERT INTO principals (id, kind, name, partner_id, attrs, created_at) VALUES (")
        .bind(principal.id.as_str())
        .push(", ")
        .bind(principal.kind.as_str())
        .push(", ")
        .bind(principal.name.as_str())
        .push(", ")
        .bind(principal.partner_id.clone())
        .push(", ")
        .bind(attrs)
        .push(", ")
        .bind(principal.created_at.as_str())
        .push(")");
    tx.execute(&sql).await?;
    Ok(())
}

async fn roles_of(db: &Db, id: &str) -> Result<Vec<String>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT role FROM role_bindings WHERE principal_id = ")
        .bind(id)
        .push(" ORDER BY role");
    Ok(db
        .fetch_all(&sql)
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect())
}

/// Reads a principal that is not deleted, with its roles.
pub async fn get(db: &Db, id: &str) -> Result<Option<PrincipalRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(PRINCIPAL_COLUMNS)
        .push(" FROM principals WHERE deleted_at IS NULL AND id = ")
        .bind(id);
    let Some(row) = db.fetch_optional(&sql).await? else {
        return Ok(None);
    };
    let mut principal = principal_from_row(&row);
    principal.roles = roles_of(db, id).await?;
    Ok(Some(principal))
}

/// Every principal that is not deleted (of `partner` only, if given),
/// with its roles, in id order, starting after `after` (at most `limit`).
pub async fn list(
    db: &Db,
    after: Option<&str>,
    limit: usize,
    partner: Option<&str>,
) -> Result<Vec<PrincipalRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(PRINCIPAL_COLUMNS)
        .push(" FROM principals WHERE deleted_at IS NULL");
    if let Some(after) = after {
        sql.push(" AND id > ").bind(after);
    }
    if let Some(partner) = partner {
        sql.push(" AND partner_id = ").bind(partner);
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit as i64);
    let rows = db.fetch_all(&sql).await?;
    let mut out: Vec<PrincipalRow> = rows.iter().map(principal_from_row).collect();
    for principal in &mut out {
        principal.roles = roles_of(db, &principal.id).await?;
    }
    Ok(out)
}

/// The role bindings of every principal that is not deleted, inside a
/// write transaction (for the separation-of-duties and lockout checks,
/// which must see the bindings the transaction will commit against).
pub async fn all_bindings(tx: &mut Tx) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let mut sql = tx.sql();
    sql.push(
        "SELECT b.principal_id, b.role FROM role_bindings b JOIN principals p ON p.id = b.principal_id \
         WHERE p.deleted_at IS NULL ORDER BY b.principal_id, b.role",
    );
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in tx.fetch_all(&sql).await? {
        out.entry(row.text(0)).or_default().push(row.text(1));
    }
    Ok(out)
}

/// Reads a principal (not deleted) inside a write transaction, with roles.
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<PrincipalRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(PRINCIPAL_COLUMNS)
        .push(" FROM principals WHERE deleted_at IS NULL AND id = ")
        .bind(id);
    let Some(row) = tx.fetch_optional(&sql).await? else {
        return Ok(None);
    };
    let mut principal = principal_from_row(&row);
    let mut sql = tx.sql();
    sql.push("SELECT role FROM role_bindings WHERE principal_id = ")
        .bind(id)
        .push(" ORDER BY role");
    principal.roles = tx
        .fetch_all(&sql)
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect();
    Ok(Some(principal))
}

/// Binds a role. Returns false if it was already bound.
pub async fn bind_role(
    tx: &mut Tx,
    principal_id: &str,
    role: &str,
    now: &str,
    by: Option<&str>,
) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("INSERT INTO role_bindings (principal_id, role, created_at, created_by) VALUES (")
        .bind(principal_id)
        .push(", ")
        .bind(role)
        .push(", ")
        .bind(now)
        .push(", ")
        .bind(by.map(str::to_owned))
        .push(") ON CONFLICT (principal_id, role) DO NOTHING");
    Ok(tx.execute(&sql).await? == 1)
}

/// Removes a binding. Returns false if there was none.
pub async fn unbind_role(tx: &mut Tx, principal_id: &str, role: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("DELETE FROM role_bindings WHERE principal_id = ")
        .bind(principal_id)
        .push(" AND role = ")
        .bind(role);
    Ok(tx.execute(&sql).await? == 1)
}

/// Marks a principal deleted, removes its bindings and revokes its
/// credentials: what went with it, or None if it did not exist.
pub async fn delete(tx: &mut Tx, id: &str, now: &str) -> Result<Option<Removed>, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE principals SET deleted_at = ")
        .bind(now)
        .push(" WHERE deleted_at IS NULL AND id = ")
        .bind(id);
    if tx.execute(&sql).await? != 1 {
        return Ok(None);
    }
    let mut sql = tx.sql();
    sql.push("SELECT role FROM role_bindings WHERE principal_id = ")
        .bind(id)
        .push(" ORDER BY role");
    let roles = tx
        .fetch_all(&sql)
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect();
    let mut sql = tx.sql();
    sql.push("SELECT id FROM credentials WHERE revoked_at IS NULL AND principal_id = ")
        .bind(id)
        .push(" ORDER BY id");
    let credentials = tx
        .fetch_all(&sql)
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect();
    let mut sql = tx.sql();
    sql.push("DELETE FROM role_bindings WHERE principal_id = ")
        .bind(id);
    tx.execute(&sql).await?;
    let mut sql = tx.sql();
    sql.push("UPDATE credentials SET revoked_at = ")
        .bind(now)
        .push(" WHERE revoked_at IS NULL AND principal_id = ")
        .bind(id);
    tx.execute(&sql).await?;
    Ok(Some(Removed { roles, credentials }))
}

/// What deleting a principal took with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The roles it held (their bindings are gone).
    pub roles: Vec<String>,
    /// The ids of the credentials it could still use (now revoked).
    pub credentials: Vec<String>,
}

/// Stores a credential (its token's hash only).
pub async fn insert_credential(
    tx: &mut Tx,
    credential: &CredentialRow,
    token_hash: &str,
) -> Result<(), StoreError> {
    let mut sql = tx.sql();
    sql.push(
        "INSERT INTO credentials (id, principal_id, token_hash, prefix, created_at, expires_at) VALUES (",
    )
    .bind(credential.id.as_str())
    .push(", ")
    .bind(credential.principal_id.as_str())
    .push(", ")
    .bind(token_hash)
    .push(", ")
    .bind(credential.prefix.as_str())
    .push(", ")
    .bind(credential.created_at.as_str())
    .push(", ")
    .bind(credential.expires_at.clone())
    .push(")");
    tx.execute(&sql).await?;
    Ok(())
}

/// A principal's credentials, newest first.
pub async fn credentials(db: &Db, principal_id: &str) -> Result<Vec<CredentialRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(CREDENTIAL_COLUMNS)
        .push(" FROM credentials WHERE principal_id = ")
        .bind(principal_id)
        .push(" ORDER BY created_at DESC, id DESC");
    Ok(db
        .fetch_all(&sql)
        .await?
        .iter()
        .map(credential_from_row)
        .collect())
}

/// One credential inside a write transaction.
pub async fn credential_in(tx: &mut Tx, id: &str) -> Result<Option<CredentialRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(CREDENTIAL_COLUMNS)
        .push(" FROM credentials WHERE id = ")
        .bind(id);
    Ok(tx
        .fetch_optional(&sql)
        .await?
        .as_ref()
        .map(credential_from_row))
}

/// Revokes a credential. Returns false if it was already revoked or absent.
pub async fn revoke_credential(tx: &mut Tx, id: &str, now: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE credentials SET revoked_at = ")
        .bind(now)
        .push(" WHERE revoked_at IS NULL AND id = ")
        .bind(id);
    Ok(tx.execute(&sql).await? == 1)
}

/// Ids of the principals (not deleted) with at least one credential that is
/// neither revoked nor expired at `now`.
pub async fn with_live_credentials(tx: &mut Tx, now: &str) -> Result<Vec<String>, StoreError> {
    let mut sql = tx.sql();
    sql.push(
        "SELECT DISTINCT c.principal_id FROM credentials c JOIN principals p ON p.id = c.principal_id \
         WHERE p.deleted_at IS NULL AND c.revoked_at IS NULL AND (c.expires_at IS NULL OR c.expires_at > ",
    )
    .bind(now)
    .push(") ORDER BY c.principal_id");
    Ok(tx
        .fetch_all(&sql)
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect())
}

/// What a token authenticates: the principal, with roles, and the
/// credential's expiry and revocation.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The principal.
    pub principal: PrincipalRow,
    /// The credential.
    pub credential: CredentialRow,
}

/// Looks a credential up by its token's hash.
pub async fn authenticate(db: &Db, token_hash: &str) -> Result<Option<Authenticated>, StoreError> {
    let mut sql = db.sql();
    sql.push(
        "SELECT p.id, p.kind, p.name, p.partner_id, p.attrs, p.created_at, \
         c.id, c.principal_id, c.prefix, c.created_at, c.expires_at, c.revoked_at \
         FROM credentials c JOIN principals p ON p.id = c.principal_id \
         WHERE p.deleted_at IS NULL AND c.token_hash = ",
    )
    .bind(token_hash);
    let Some(row) = db.fetch_optional(&sql).await? else {
        return Ok(None);
    };
    let mut principal = principal_from_row(&row);
    let credential = credential_from_row(&Row(row.0[6..].to_vec()));
    principal.roles = roles_of(db, &principal.id).await?;
    Ok(Some(Authenticated {
        principal,
        credential,
    }))
}

/// Reads a setting.
pub async fn setting(db: &Db, name: &str) -> Result<Option<String>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT value FROM settings WHERE name = ")
        .bind(name);
    Ok(db.fetch_optional(&sql).await?.map(|r| r.text(0)))
}

/// Writes a setting if it is not set yet; returns whether it was written.
pub async fn insert_setting(tx: &mut Tx, name: &str, value: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("INSERT INTO settings (name, value) VALUES (")
        .bind(name)
        .push(", ")
        .bind(value)
        .push(") ON CONFLICT (name) DO NOTHING");
    Ok(tx.execute(&sql).await? == 1)
}

/// Values stored for an idempotent request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// SHA-256 of the request body.
    pub body_hash: String,
    /// The response's status.
    pub status: u16,
    /// The response's body.
    pub response: String,
    /// When it was stored.
    pub created_at: String,
}

/// The response stored for `(principal, key)` since `since`, if any.
pub async fn idempotent_response(
    tx: &mut Tx,
    principal_id: &str,
    key: &str,
    since: &str,
) -> Result<Option<IdempotentResponse>, StoreError> {
    let mut sql = tx.sql();
    sql.push(
        "SELECT method, path, body_hash, status, response, created_at FROM idempotency_keys WHERE principal_id = ",
    )
    .bind(principal_id)
    .push(" AND key = ")
    .bind(key)
    .push(" AND created_at >= ")
    .bind(since);
    Ok(tx.fetch_optional(&sql).await?.map(|r| IdempotentResponse {
        method: r.text(0),
        path: r.text(1),
        body_hash: r.text(2),
        status: u16::try_from(r.int(3)).unwrap_or(500),
        response: r.text(4),
        created_at: r.text(5),
    }))
}

/// Stores the response of an idempotent request, replacing an expired one
/// (created before `expired_before`). A live one makes the insert fail with
/// [`StoreError::Conflict`]: a concurrent request with the same key won.
pub async fn store_idempotent_response(
    tx: &mut Tx,
    principal_id: &str,
    key: &str,
    response: &IdempotentResponse,
    expired_before: &str,
) -> Result<(), StoreError> {
    let mut sql = tx.sql();
    sql.push("DELETE FROM idempotency_keys WHERE principal_id = ")
        .bind(principal_id)
        .push(" AND key = ")
        .bind(key)
        .push(" AND created_at < ")
        .bind(expired_before);
    tx.execute(&sql).await?;
    let mut sql = tx.sql();
    sql.push(
        "INSERT INTO idempotency_keys (principal_id, key, method, path, body_hash, status, response, created_at) VALUES (",
    )
    .bind(principal_id)
    .push(", ")
    .bind(key)
    .push(", ")
    .bind(response.method.as_str())
    .push(", ")
    .bind(response.path.as_str())
    .push(", ")
    .bind(response.body_hash.as_str())
    .push(", ")
    .bind(i64::from(response.status))
    .push(", ")
    .bind(response.response.as_str())
    .push(", ")
    .bind(response.created_at.as_str())
    .push(")");
    tx.execute(&sql).await?;
    Ok(())
}

/// Deletes idempotency records older than `before`.
pub async fn expire_idempotency(tx: &mut Tx, before: &str) -> Result<u64, StoreError> {
    let mut sql = tx.sql();
    sql.push("DELETE FROM idempotency_keys WHERE created_at < ")
        .bind(before);
    tx.execute(&sql).await
}

/// The live credentials of the principals bound to a partner:
/// `(principal id, credential id)`, in that order.
pub async fn partner_credentials(
    db: &Db,
    partner_id: &str,
    now: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut sql = db.sql();
    sql.push(
        "SELECT p.id, c.id FROM principals p JOIN credentials c ON c.principal_id = p.id \
         WHERE p.partner_id = ",
    )
    .bind(partner_id)
    .push(" AND p.deleted_at IS NULL AND c.revoked_at IS NULL AND (c.expires_at IS NULL OR c.expires_at > ")
    .bind(now)
    .push(") ORDER BY p.id, c.id");
    Ok(db
        .fetch_all(&sql)
        .await?
        .into_iter()
        .map(|mut row| (row.take_text(0), row.take_text(1)))
        .collect())
}
