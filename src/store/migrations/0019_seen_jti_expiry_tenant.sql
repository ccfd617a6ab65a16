-- The sweeper's purge of replay records ("tenant = ? AND expires_at < ?")
-- could not use seen_jti_expiry, which had no tenant column: SQLite took
-- the primary key's tenant prefix instead and read every live record of
-- the tenant, on the store writer, once per sweep. At 140 000 records
-- (one per ID-JAG registration within its token's lifetime) that held
-- every queued write for about 360 ms each pass (issue 8). With the
-- tenant first, the purge reads only the records that are due.
DROP INDEX seen_jti_expiry;
CREATE INDEX seen_jti_expiry ON seen_jti (tenant, expires_at);
