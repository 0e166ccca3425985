-- Every policy version (R11): content, hash, author, message, state and
-- who approved it. The active version's text is also the `policy` setting,
-- which servers read at start and poll to follow activations.

CREATE TABLE policy_versions (
    number      BIGINT PRIMARY KEY,
    hash        TEXT NOT NULL,
    content     TEXT NOT NULL,
    author      TEXT NOT NULL,
    message     TEXT NOT NULL,
    state       TEXT NOT NULL,
    approved_by TEXT,
    rollback_of BIGINT,
    based_on    BIGINT,
    created_at  TEXT NOT NULL,
    decided_at  TEXT
);
CREATE INDEX policy_versions_state ON policy_versions (state, number);
