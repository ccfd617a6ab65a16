-- Revocations reach a v0.1 service as a logout token (POST to the grant's
-- revocation_uri) and a v0.6 service as a Security Event Token (RFC 8417,
-- RFC 8935 push to its events_endpoint). delivery / format: logout | set.
-- The grant's revocation_uri column holds the target URL of either kind.
ALTER TABLE grants ADD COLUMN delivery TEXT NOT NULL DEFAULT 'logout';
ALTER TABLE deliveries ADD COLUMN format TEXT NOT NULL DEFAULT 'logout';
