-- SQLite only (the migrator skips migrations named `sqlite_…` on
-- PostgreSQL and `postgres_…` on SQLite).
--
-- `seq BIGINT PRIMARY KEY` is not SQLite's rowid: the event table was a
-- rowid table plus a separate unique index on seq, two b-trees written
-- with every append (the index's right edge rewritten each commit).
-- `INTEGER PRIMARY KEY` makes seq the rowid itself. Likewise the lookup
-- tables, whose primary key is the whole row, become WITHOUT ROWID tables:
-- one b-tree each instead of a table and an index holding the same keys.
-- The lookup tables are derived data: they are made anew, empty, and the
-- indexer fills them again from the events (audit_indexed back to 0).

CREATE TABLE audit_events_rowid (
    seq            INTEGER PRIMARY KEY,
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
INSERT INTO audit_events_rowid
    SELECT seq, at, kind, principal_id, action, resource_type, resource_id, partner_id,
           decision, policy_version, detail, prev_hash, hash
    FROM audit_events ORDER BY seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_rowid RENAME TO audit_events;
CREATE INDEX audit_at ON audit_events (at, seq);

DROP TABLE audit_by_principal;
DROP TABLE audit_by_partner;
DROP TABLE audit_by_resource;
CREATE TABLE audit_by_principal (
    block        INTEGER NOT NULL,
    principal_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (block, principal_id, seq)
) WITHOUT ROWID;
CREATE TABLE audit_by_partner (
    block      INTEGER NOT NULL,
    partner_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (block, partner_id, seq)
) WITHOUT ROWID;
CREATE TABLE audit_by_resource (
    block         INTEGER NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    PRIMARY KEY (block, resource_type, resource_id, seq)
) WITHOUT ROWID;
UPDATE audit_indexed SET through = 0;
