-- Protocol v0.6 (issue 13): RFC 8707. An access token from /oauth2/token
-- is audience-restricted to the resource it was issued for; the bearer
-- check refuses it anywhere else. '' (every credential of v0.1): not
-- restricted beyond this service.

ALTER TABLE credentials ADD COLUMN resource TEXT NOT NULL DEFAULT '';
