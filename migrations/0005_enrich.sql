-- orderwatch schema, version 5.
--
-- Order details ([enrich] order_details): a transition whose event should
-- carry the order's details is *held* (a row in `enrichment`) from the
-- moment it is recorded, in the same transaction, until its lookup
-- succeeded, answered 404, or gave up; no sink sees it before. The details
-- are stored with the transition (`details`, the JSON of the event's
-- `data.order`: an object, or `null` when the lookup found nothing or gave
-- up; NULL when no lookup was asked for), so `events --json`, redeliveries
-- and every sink carry the same bytes.
ALTER TABLE transitions ADD COLUMN details TEXT;

CREATE TABLE enrichment (
    seq             INTEGER PRIMARY KEY REFERENCES transitions (seq),
    order_id        INTEGER NOT NULL,
    -- When the transition was recorded (unix ms): give_up_after counts from here.
    held_at         INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX enrichment_due ON enrichment (next_attempt_at);
CREATE INDEX enrichment_order ON enrichment (order_id);
