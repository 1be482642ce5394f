-- orderwatch schema, version 1.
-- Released migrations are never edited; a change is a new numbered file.

-- Where polling stands: every change up to `position` (unix ms) has been seen.
CREATE TABLE cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);

-- The last status seen for each order: the `previous_status` of its next transition.
CREATE TABLE orders (
    order_id       INTEGER PRIMARY KEY,
    certificate_id INTEGER,
    status         TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Every (order, status) pair ever seen, once. `seq` is the recording order,
-- which is also the delivery order of one order's events.
CREATE TABLE transitions (
    seq             INTEGER PRIMARY KEY,
    order_id        INTEGER NOT NULL,
    status          TEXT NOT NULL,
    certificate_id  INTEGER,
    previous_status TEXT,
    seen_at         INTEGER NOT NULL,
    UNIQUE (order_id, status)
);
CREATE INDEX transitions_seen_at ON transitions (seen_at);

-- Per-sink state that outlives a restart (a receiver answered 410 Gone).
CREATE TABLE sinks (
    name          TEXT PRIMARY KEY,
    paused_at     INTEGER,
    paused_reason TEXT
);

-- The per-sink outbox and delivery ledger. Rows are written in the same
-- transaction as their transition and the cursor, so nothing recorded can
-- be lost before delivery.
CREATE TABLE outbox (
    sink             TEXT NOT NULL,
    seq              INTEGER NOT NULL REFERENCES transitions (seq),
    order_id         INTEGER NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    first_failure_at INTEGER,
    last_error       TEXT,
    done_at          INTEGER,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
CREATE INDEX outbox_pending ON outbox (sink, seq) WHERE state = 'pending';
CREATE INDEX outbox_pending_order ON outbox (sink, order_id, seq) WHERE state = 'pending';
CREATE INDEX outbox_dead ON outbox (sink, seq) WHERE state = 'dead';
CREATE INDEX outbox_due ON outbox (sink, next_attempt_at) WHERE state = 'pending';
