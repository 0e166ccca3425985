-- Contract change requests (maker-checker): proposed terms wait here until
-- a different principal approves (they are applied to the contract in the
-- same transaction), rejects them with a reason, or the author withdraws.

CREATE TABLE change_requests (
    id           TEXT PRIMARY KEY,
    contract_id  TEXT NOT NULL REFERENCES contracts (id) ON DELETE CASCADE,
    partner_id   TEXT NOT NULL,
    proposer_id  TEXT NOT NULL,
    base_version BIGINT NOT NULL,
    terms        TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT,
    decided_by   TEXT,
    created_at   TEXT NOT NULL,
    decided_at   TEXT
);
CREATE INDEX change_requests_contract ON change_requests (contract_id, id);
CREATE INDEX change_requests_status ON change_requests (status, id);
