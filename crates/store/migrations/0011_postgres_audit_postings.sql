-- PostgreSQL only (0010 is its SQLite twin).
--
-- The lookup tables hold posting lists instead of a row per event and key:
-- a row per key and block for each chunk the indexer files, with the seqs
-- of the key's events there (`first_seq`, and each seq's distance from it,
-- comma-separated: `0,1,2,7`). Reads of one record over and over made
-- three rows an event; they make three rows a chunk of 4,096 events now,
-- and a chunk whose every key differs still writes a third of the rows.
-- The rows there are become lists here, one per key and 4,096 seqs, so
-- that what is indexed stays indexed (audit_indexed is kept).

CREATE TABLE audit_principal_postings (
    block        BIGINT NOT NULL,
    principal_id TEXT NOT NULL,
    first_seq    BIGINT NOT NULL,
    seqs         TEXT NOT NULL,
    PRIMARY KEY (block, principal_id, first_seq)
);
INSERT INTO audit_principal_postings (block, principal_id, first_seq, seqs)
    SELECT block, principal_id, first_seq, string_agg((seq - first_seq)::text, ',' ORDER BY seq)
    FROM (SELECT block, principal_id, seq,
                 MIN(seq) OVER (PARTITION BY block, principal_id, seq >> 12) AS first_seq
          FROM audit_by_principal) k
    GROUP BY block, principal_id, first_seq;
DROP TABLE audit_by_principal;
ALTER TABLE audit_principal_postings RENAME TO audit_by_principal;

CREATE TABLE audit_partner_postings (
    block      BIGINT NOT NULL,
    partner_id TEXT NOT NULL,
    first_seq  BIGINT NOT NULL,
    seqs       TEXT NOT NULL,
    PRIMARY KEY (block, partner_id, first_seq)
);
INSERT INTO audit_partner_postings (block, partner_id, first_seq, seqs)
    SELECT block, partner_id, first_seq, string_agg((seq - first_seq)::text, ',' ORDER BY seq)
    FROM (SELECT block, partner_id, seq,
                 MIN(seq) OVER (PARTITION BY block, partner_id, seq >> 12) AS first_seq
          FROM audit_by_partner) k
    GROUP BY block, partner_id, first_seq;
DROP TABLE audit_by_partner;
ALTER TABLE audit_partner_postings RENAME TO audit_by_partner;

CREATE TABLE audit_resource_postings (
    block         BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    first_seq     BIGINT NOT NULL,
    seqs          TEXT NOT NULL,
    PRIMARY KEY (block, resource_type, resource_id, first_seq)
);
INSERT INTO audit_resource_postings (block, resource_type, resource_id, first_seq, seqs)
    SELECT block, resource_type, resource_id, first_seq, string_agg((seq - first_seq)::text, ',' ORDER BY seq)
    FROM (SELECT block, resource_type, resource_id, seq,
                 MIN(seq) OVER (PARTITION BY block, resource_type, resource_id, seq >> 12) AS first_seq
          FROM audit_by_resource) k
    GROUP BY block, resource_type, resource_id, first_seq;
DROP TABLE audit_by_resource;
ALTER TABLE audit_resource_postings RENAME TO audit_by_resource;
