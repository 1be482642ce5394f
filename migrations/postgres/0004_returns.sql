-- orderwatch schema for PostgreSQL, version 4 (as SQLite's 0004).
--
-- A status that comes back is a new transition: the dedupe key of
-- `transitions` becomes (order_id, status, occurrence), where `occurrence`
-- counts the order's earlier transitions to that status (0 the first time,
-- k for the k-th return; event ids "{order_id}:{status}" and
-- "{order_id}:{status}:{k}"). Existing rows are occurrence 0, so nothing is
-- re-emitted and every id keeps its meaning.
ALTER TABLE transitions ADD COLUMN occurrence integer NOT NULL DEFAULT 0;
ALTER TABLE transitions DROP CONSTRAINT transitions_order_id_status_key;
ALTER TABLE transitions ADD CONSTRAINT transitions_order_id_status_occurrence_key
    UNIQUE (order_id, status, occurrence);
