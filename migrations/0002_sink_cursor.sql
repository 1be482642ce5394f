-- orderwatch schema, version 2.
--
-- Sinks that deliver in order, one batch at a time (file, stdout), keep a
-- cursor instead of one outbox row per event: every transition after
-- `delivered_through` that the sink's status filter takes is pending. An
-- outbox row is written for such a sink only when there is something to
-- remember about one event: a failed attempt, a dead letter, a redelivery.
-- NULL means the sink keeps one outbox row per event (webhooks).
ALTER TABLE sinks ADD COLUMN delivered_through INTEGER;
