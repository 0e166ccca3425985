-- Elevations (R9): a principal asks for high-risk permissions, on one
-- partner or on all it may reach, with a reason and a duration; another
-- principal approves or denies. An approved elevation is used through a
-- separate short-lived token (only its SHA-256 is kept), together with the
-- principal's own token, until it expires or is revoked.

CREATE TABLE elevations (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    partner_id   TEXT,
    reason       TEXT NOT NULL,
    ttl_seconds  BIGINT NOT NULL,
    status       TEXT NOT NULL,
    decided_by   TEXT,
    decided_at   TEXT,
    expires_at   TEXT,
    token_hash   TEXT UNIQUE,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX elevations_principal ON elevations (principal_id, id);
CREATE INDEX elevations_status ON elevations (status, id);
