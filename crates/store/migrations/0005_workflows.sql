-- Workflows: partner onboarding (partner and draft contract made when
-- triggered; the partner's api_client and its credential once another
-- principal approves) and offboarding (credentials revoked, partner
-- archived).

CREATE TABLE workflows (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    partner_id    TEXT NOT NULL,
    contract_id   TEXT,
    triggered_by  TEXT NOT NULL,
    status        TEXT NOT NULL,
    approved_by   TEXT,
    api_client_id TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX workflows_partner ON workflows (partner_id, id);
