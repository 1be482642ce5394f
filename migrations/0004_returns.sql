-- orderwatch schema, version 4.
--
-- A status that comes back is a new transition: `issued` after a reissue,
-- `pending` after `needs_approval`, or `issued` again with another
-- certificate. The dedupe key of `transitions` becomes
-- (order_id, status, occurrence), where `occurrence` counts the earlier
-- transitions of the order to that status (0 the first time, k for the
-- k-th return); event ids are "{order_id}:{status}" for occurrence 0 and
-- "{order_id}:{status}:{k}" after that, so every id minted before this
-- migration keeps its meaning.
--
-- SQLite cannot drop a UNIQUE constraint in place, so the table is rebuilt
-- (SQLite's documented 12-step procedure; the migration runner turns
-- foreign keys off around it and checks them before committing). Nothing
-- is re-emitted: every existing row is occurrence 0 with its seq unchanged,
-- and `orders` already holds each order's current status, against which
-- the next sightings are compared.
CREATE TABLE transitions_v3 (
    seq             INTEGER PRIMARY KEY,
    order_id        INTEGER NOT NULL,
    status          TEXT NOT NULL,
    occurrence      INTEGER NOT NULL DEFAULT 0,
    certificate_id  INTEGER,
    previous_status TEXT,
    seen_at         INTEGER NOT NULL,
    UNIQUE (order_id, status, occurrence)
);
INSERT INTO transitions_v3 (seq, order_id, status, occurrence, certificate_id, previous_status, seen_at)
    SELECT seq, order_id, status, 0, certificate_id, previous_status, seen_at FROM transitions;
DROP TABLE transitions;
ALTER TABLE transitions_v3 RENAME TO transitions;
CREATE INDEX transitions_seen_at ON transitions (seen_at);
