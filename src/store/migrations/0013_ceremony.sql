-- The v0.4-v0.6 claim ceremony (issue 14): a user_code typed by the signed-in
-- user at the service's /claim page while the agent polls /oauth2/token with
-- the claim grant. One row per attempt; a new attempt of a registration
-- expires the open one. Secrets are kept only as SHA-256: the
-- claim_attempt_token of the verification URL, and the user_code (hashed
-- with the attempt id, so equal codes of two attempts never share a hash).
-- status: initiated | completed | denied | expired
CREATE TABLE ceremony_attempts (
    tenant          TEXT NOT NULL,
    id              TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    token_hash      BLOB NOT NULL,
    code_hash       BLOB NOT NULL,
    email           TEXT NOT NULL,         -- the bound claim_email, normalized
    attempts_left   INTEGER NOT NULL,      -- wrong user_code entries still allowed
    status          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,      -- the user_code's window
    last_poll_at    INTEGER,               -- NULL: not polled yet
    poll_interval   INTEGER NOT NULL,      -- seconds; slow_down adds 5
    user_id         TEXT,                  -- who completed or denied it
    redeemed_at     INTEGER,               -- the claim grant answered its tokens once
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX ceremony_attempts_token ON ceremony_attempts (tenant, token_hash);
CREATE INDEX ceremony_attempts_reg ON ceremony_attempts (tenant, registration_id, created_at);
