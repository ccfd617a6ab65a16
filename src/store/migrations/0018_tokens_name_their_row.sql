-- Credentials and claim tokens issued from now on name their row:
-- sk_<id>_<secret>, where <id> is the row's time-ordered id without its
-- prefix (docs/decisions.md). They are found by primary key and checked by
-- their hash, so they no longer add an entry to an index keyed by a random
-- SHA-256: one random B-tree leaf per index per registration, the write
-- that made registration slower and its p99 longer as the tables grew
-- (issue 8). The older tokens still work: their rows (by_id NULL) keep a
-- partial index by hash. Adding a nullable column rewrites no row.
ALTER TABLE credentials ADD COLUMN by_id INTEGER;
DROP INDEX credentials_hash;
CREATE UNIQUE INDEX credentials_hash ON credentials (tenant, hash) WHERE by_id IS NULL;

ALTER TABLE registrations ADD COLUMN claim_by_id INTEGER;
DROP INDEX registrations_claim;
CREATE UNIQUE INDEX registrations_claim ON registrations (tenant, claim_token_hash)
	WHERE claim_token_hash IS NOT NULL AND claim_by_id IS NULL;
