-- The trail's lookups by principal, partner and resource leave the event
-- table: indexes on it are written with every append, each at a scattered
-- place (a page per key per commit), which held appends to a third of what
-- the table alone takes. They become tables filled behind the appends, in
-- sorted bulk, by the indexer (store::audit::index_pending), which records
-- in audit_indexed how far it has gone; queries read these tables up to
-- that seq and scan the events after it. Keys lead with the event's block
-- (seq / 65536): new keys go into the newest block's small region instead
-- of all over the table, and a lookup reads block by block, newest first.
-- Derived data: not in the chain.

DROP INDEX audit_principal;
DROP INDEX audit_partner;
DROP INDEX audit_resource;

CREATE TABLE audit_by_principal (
    block        BIGINT NOT NULL,
    principal_id TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    PRIMARY KEY (block, principal_id, seq)
);
CREATE TABLE audit_by_partner (
    block      BIGINT NOT NULL,
    partner_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (block, partner_id, seq)
);
CREATE TABLE audit_by_resource (
    block         BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    PRIMARY KEY (block, resource_type, resource_id, seq)
);

-- Events with seq up to `through` are in the tables above.
CREATE TABLE audit_indexed (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    through BIGINT NOT NULL
);
INSERT INTO audit_indexed (id, through) VALUES (1, 0);
