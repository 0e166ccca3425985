-- The audit trail: hash-chained events, signed checkpoints, and usage
-- counters kept up to date with every appended batch.

CREATE TABLE audit_events (
    seq            BIGINT PRIMARY KEY,
    at             TEXT NOT NULL,
    kind           TEXT NOT NULL,
    principal_id   TEXT,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT,
    partner_id     TEXT,
    decision       TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    detail         TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX audit_principal ON audit_events (principal_id, seq);
CREATE INDEX audit_partner ON audit_events (partner_id, seq);
CREATE INDEX audit_resource ON audit_events (resource_type, resource_id, seq);
CREATE INDEX audit_at ON audit_events (at, seq);

CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    at         TEXT NOT NULL,
    signature  TEXT NOT NULL,
    public_key TEXT NOT NULL
);

CREATE TABLE usage_counters (
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    allows  BIGINT NOT NULL DEFAULT 0,
    denies  BIGINT NOT NULL DEFAULT 0,
    last_at TEXT,
    PRIMARY KEY (kind, name)
);
