-- orderwatch schema for PostgreSQL, version 5 (as SQLite's 0005).
--
-- Order details ([enrich] order_details): a transition whose event should
-- carry its order's details is held (a row in `enrichment`, written in the
-- transaction that records it) until its lookup succeeded, answered 404 or
-- gave up; no sink sees it before. `details` is the JSON of the event's
-- `data.order` (an object, or `null`); NULL when no lookup was asked for.
ALTER TABLE transitions ADD COLUMN details text;

CREATE TABLE enrichment (
    seq             bigint PRIMARY KEY REFERENCES transitions (seq),
    order_id        bigint NOT NULL,
    -- When the transition was recorded (unix ms): give_up_after counts from here.
    held_at         bigint NOT NULL,
    next_attempt_at bigint NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text
);
CREATE INDEX enrichment_due ON enrichment (next_attempt_at);
CREATE INDEX enrichment_order ON enrichment (order_id);
