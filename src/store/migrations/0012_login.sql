-- User sign-in at the service (issue 14): login attempts and web sessions.
-- Secrets are kept only as SHA-256: the link token of an attempt, its
-- one-time code (hashed with the attempt id, as claim OTPs are), the
-- pre-session cookie the attempt was started from, and the session
-- cookie. Both tables are swept once expired (flows/login.c).
CREATE TABLE login_attempts (
    tenant        TEXT NOT NULL,
    id            TEXT NOT NULL,
    email         TEXT NOT NULL,
    link_hash     BLOB NOT NULL,
    code_hash     BLOB NOT NULL,
    browser_hash  BLOB NOT NULL,
    return_to     TEXT NOT NULL,
    ip            TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'used', 'burned')),
    failures      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX login_attempts_link ON login_attempts (tenant, link_hash);
CREATE INDEX login_attempts_email ON login_attempts (tenant, email, created_at);
CREATE INDEX login_attempts_expiry ON login_attempts (tenant, expires_at);

CREATE TABLE web_sessions (
    tenant      TEXT NOT NULL,
    hash        BLOB NOT NULL,
    id          TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    email       TEXT NOT NULL,
    auth_time   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, hash)
);
CREATE INDEX web_sessions_expiry ON web_sessions (tenant, expires_at);
CREATE INDEX web_sessions_seen ON web_sessions (tenant, last_seen);
