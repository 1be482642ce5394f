-- orderwatch schema for PostgreSQL, version 2: SQLite's version 2
-- (migrations/0002_sink_cursor.sql).
--
-- Sinks that deliver in order, one batch at a time (file, stdout), keep a
-- cursor instead of one outbox row per event: every transition after
-- `delivered_through` that the sink's status filter takes is pending.
-- NULL means the sink keeps one outbox row per event (webhooks).
ALTER TABLE sinks ADD COLUMN delivered_through bigint;
