-- Both databases.
--
-- The lookup tables' blocks are 4,096 events (`seq >> 12`) instead of
-- 65,536: a chunk of the indexer then files its rows into a block of its
-- own, side by side at the end of each table, instead of among the rows
-- of the fifteen chunks before it in the same block (an indexer chunk whose
-- every event names another partner rewrote most of the block's pages).
-- A row's seqs lie in its block, so the rows filed so far cannot be
-- renumbered: they are dropped, and the indexer files the whole trail
-- again from its first event (the lookup tables are derived data, outside
-- the chain; until it has caught up, lookups read the events it has not
-- reached one by one, as they always do past the indexed seq). The time
-- spans do not depend on the blocks and are kept.

DELETE FROM audit_by_principal;
DELETE FROM audit_by_partner;
DELETE FROM audit_by_resource;
DELETE FROM audit_indexed;
