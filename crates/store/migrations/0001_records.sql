-- partnerdb schema, version 1: records, principals, role bindings,
-- credentials, idempotency keys and settings. Written once for SQLite and
-- PostgreSQL: TEXT and BIGINT only; timestamps are RFC 3339 UTC text of
-- fixed width (they sort as text); money is BIGINT minor units.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE principals (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'api_client')),
    name        TEXT NOT NULL,
    partner_id  TEXT,
    attrs       TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    deleted_at  TEXT,
    version     BIGINT NOT NULL DEFAULT 1,
    CHECK (kind = 'user' OR partner_id IS NOT NULL)
);
CREATE INDEX principals_partner ON principals (partner_id);

CREATE TABLE role_bindings (
    principal_id TEXT NOT NULL REFERENCES principals (id),
    role         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    created_by   TEXT,
    PRIMARY KEY (principal_id, role)
);
CREATE INDEX role_bindings_role ON role_bindings (role);

CREATE TABLE credentials (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals (id),
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT
);
CREATE INDEX credentials_principal ON credentials (principal_id);

CREATE TABLE partners (
    id              TEXT PRIMARY KEY,
    partner_id      TEXT NOT NULL,
    owner           TEXT,
    version         BIGINT NOT NULL,
    name            TEXT NOT NULL,
    legal_name      TEXT,
    region          TEXT NOT NULL,
    tier            TEXT NOT NULL,
    status          TEXT NOT NULL,
    website         TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    credit_limit    BIGINT,
    credit_currency TEXT,
    payment_terms   TEXT,
    billing_account TEXT,
    bank_account    TEXT,
    tax_id          TEXT,
    CHECK (partner_id = id)
);
CREATE INDEX partners_owner ON partners (owner, id);
CREATE INDEX partners_region ON partners (region, id);
CREATE INDEX partners_status ON partners (status, id);
CREATE INDEX partners_name ON partners (name, id);
CREATE INDEX partners_created ON partners (created_at, id);

CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL REFERENCES partners (id),
    owner       TEXT,
    p_region    TEXT,
    p_tier      TEXT,
    version     BIGINT NOT NULL,
    title       TEXT,
    department  TEXT,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT,
    phone       TEXT
);
CREATE INDEX contacts_partner ON contacts (partner_id, id);
CREATE INDEX contacts_owner ON contacts (owner, id);
CREATE INDEX contacts_created ON contacts (created_at, id);

CREATE TABLE contracts (
    id              TEXT PRIMARY KEY,
    partner_id      TEXT NOT NULL REFERENCES partners (id),
    owner           TEXT,
    p_region        TEXT,
    p_tier          TEXT,
    version         BIGINT NOT NULL,
    title           TEXT NOT NULL,
    status          TEXT NOT NULL,
    start_date      TEXT,
    end_date        TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    value           BIGINT,
    currency        TEXT,
    commission_rate BIGINT,
    terms           TEXT,
    clauses         TEXT,
    signed_by       TEXT,
    signed_at       TEXT
);
CREATE INDEX contracts_partner ON contracts (partner_id, id);
CREATE INDEX contracts_owner ON contracts (owner, id);
CREATE INDEX contracts_created ON contracts (created_at, id);

CREATE TABLE transactions (
    id           TEXT PRIMARY KEY,
    partner_id   TEXT NOT NULL REFERENCES partners (id),
    owner        TEXT,
    p_region     TEXT,
    p_tier       TEXT,
    version      BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    occurred_at  TEXT NOT NULL,
    contract_id  TEXT REFERENCES contracts (id),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    reference    TEXT
);
CREATE INDEX transactions_partner ON transactions (partner_id, id);
CREATE INDEX transactions_owner ON transactions (owner, id);
CREATE INDEX transactions_occurred ON transactions (occurred_at, id);
CREATE INDEX transactions_partner_occurred ON transactions (partner_id, occurred_at, id);
CREATE INDEX transactions_contract ON transactions (contract_id);

CREATE TABLE idempotency_keys (
    principal_id  TEXT NOT NULL,
    key           TEXT NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    body_hash     TEXT NOT NULL,
    status        BIGINT NOT NULL,
    response      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (principal_id, key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);
