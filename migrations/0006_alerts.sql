-- orderwatch schema, version 6.
--
-- Operational events ("alerts"): orderwatch's own CloudEvents for sinks
-- with `operational = true`: a delivery became dead, a sink was paused by
-- 410 Gone, polling failed for `[alerts] poll_failures` cycles in a row and
-- recovered. Each is written in the transaction of the state change that
-- causes it (marking dead, pausing), so a crash neither loses nor doubles
-- one; its id ("ow:…", never an order's) is minted once, here, and every
-- redelivery carries it. Alerts are kept (they are few); their ledger rows
-- age out like the outbox's.
CREATE TABLE alerts (
    seq        INTEGER PRIMARY KEY,
    -- The event id: "ow:" || key || ":" || n, n counting alerts of that key.
    id         TEXT NOT NULL UNIQUE,
    key        TEXT NOT NULL,
    type       TEXT NOT NULL,
    -- The sink the alert is about (never routed to it); NULL for polling.
    about      TEXT,
    -- The event's `data`, as JSON text.
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX alerts_key ON alerts (key);

-- The operational sinks of the running configuration: who receives an
-- alert when it is written. The daemon replaces the list at each start
-- and reload.
CREATE TABLE alert_sinks (
    name TEXT PRIMARY KEY
);

-- The ledger of alert deliveries: the outbox's columns and rules, one row
-- per (operational sink, alert).
CREATE TABLE alert_outbox (
    sink             TEXT NOT NULL,
    seq              INTEGER NOT NULL REFERENCES alerts (seq),
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
CREATE INDEX alert_outbox_due ON alert_outbox (sink, next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_outbox_done ON alert_outbox (done_at) WHERE state <> 'pending';
