-- Only credentials that belong to a user are found by their user: an
-- anonymous registration's credential (user_id NULL until it is claimed)
-- no longer adds an entry to this index, one B-tree page fewer written per
-- anonymous registration (issue 8). A lookup by user (user_id = ?) implies
-- user_id IS NOT NULL, so the partial index serves it as the full one did.
DROP INDEX credentials_user;
CREATE INDEX credentials_user ON credentials (tenant, user_id) WHERE user_id IS NOT NULL;
