-- Refresh tokens (issue 14 item 6, proposal (b)): every identity assertion
-- of /agent/identity and of the claim grant comes with one. A family is the
-- chain of rotations from one issue; a refresh spends its token (a
-- compare-and-set on spent_at) and adds the next one to the family. A spent
-- token presented again revokes the family. Only the SHA-256 of a token is
-- kept. gen is the registration's generation when the family started, so a
-- revival (migration 0007) never revives an old family.
CREATE TABLE refresh_families (
    tenant          TEXT NOT NULL,
    id              TEXT NOT NULL,         -- rtf_...
    registration_id TEXT NOT NULL,
    gen             INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER,               -- NULL: live
    revoked_reason  TEXT,                  -- reuse | registration
    PRIMARY KEY (tenant, id)
);
CREATE INDEX refresh_families_reg ON refresh_families (tenant, registration_id);
CREATE TABLE refresh_tokens (
    tenant          TEXT NOT NULL,
    hash            BLOB NOT NULL,
    id              TEXT NOT NULL,         -- rt_..., public, for logs
    family_id       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,      -- rolling: [v06] refresh_ttl from created_at
    spent_at        INTEGER,               -- NULL: the family's current token
    PRIMARY KEY (tenant, hash)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (tenant, family_id);
