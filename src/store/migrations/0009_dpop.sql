-- DPoP (RFC 9449): an access token bound to a key carries the key's RFC 7638
-- SHA-256 thumbprint (base64url); NULL: a bearer token. The gate then wants a
-- proof from that key with every use. The proofs' jti go to seen_jti under
-- the issuer "dpop:<jkt>".
ALTER TABLE credentials ADD COLUMN jkt TEXT;
