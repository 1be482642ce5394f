-- orderwatch schema, version 3.
--
-- Retention: delivered ledger rows older than `[store] keep_delivered` are
-- deleted in small batches, and `orderwatch deliveries --purge-dead
-- --older-than` deletes old dead ones. Both select by state and `done_at`;
-- these partial indexes keep each batch a short range scan instead of a
-- walk over the whole ledger.
CREATE INDEX outbox_delivered_done ON outbox (done_at) WHERE state = 'delivered';
CREATE INDEX outbox_dead_done ON outbox (done_at) WHERE state = 'dead';
