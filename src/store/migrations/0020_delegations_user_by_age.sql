-- A delegation lookup by subject ("tenant = ? AND iss = ? AND sub = ?
-- ORDER BY created_at LIMIT 1", once per ID-JAG registration, on the
-- store writer) sorted its rows in a temporary b-tree each time: the old
-- index stopped at sub, a prefix the primary key already has. With
-- created_at in it the index gives the rows in order and the first one
-- ends the lookup (issue 8).
DROP INDEX delegations_user;
CREATE INDEX delegations_user ON delegations (tenant, iss, sub, created_at);
