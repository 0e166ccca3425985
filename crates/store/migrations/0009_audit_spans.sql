-- The trail's time index leaves the event table too: `audit_at` was written
-- with every append (its right edge rewritten each commit, a few pages per
-- batch). The indexer now records, for every span of 1,024 events
-- (seq / 1024), the earliest and latest time in it; a time filter reads
-- only the spans that can hold matching events (their seq range), and
-- scans the events after the indexed seq as it does for the lookups.
-- Derived data, not in the chain. The spans of the events already stored
-- are made here, so that the lookups filed so far stay usable; the indexer
-- merges its own into them (earliest of the earliest, latest of the
-- latest).

DROP INDEX audit_at;

CREATE TABLE audit_spans (
    span   BIGINT PRIMARY KEY,
    min_at TEXT NOT NULL,
    max_at TEXT NOT NULL
);

INSERT INTO audit_spans (span, min_at, max_at)
    SELECT seq >> 10, MIN(at), MAX(at) FROM audit_events GROUP BY seq >> 10;
