-- The trail's time index leaves the event table too: `audit_at` was written
-- with every append (its right edge rewritten each commit, a few pages per
-- batch). The indexer now records, for every span of 1,024 events
-- (seq / 1024), the earliest and latest time in it; a time filter reads
-- only the spans that can hold matching events (their seq range), and
-- scans the events after the indexed seq as it does for the lookups.
-- Derived data, not in the chain: the indexer files every event again
-- (lookup rows already filed are kept as they are).

DROP INDEX audit_at;

CREATE TABLE audit_spans (
    span   BIGINT PRIMARY KEY,
    min_at TEXT NOT NULL,
    max_at TEXT NOT NULL
);

UPDATE audit_indexed SET through = 0;
