-- The read-back claim ceremony (issue 14, proposal (b)) beside the v0.4-v0.6
-- user_code one, in the same table. mode: user_code | readback. A read-back
-- attempt gets its 6-digit code only when the signed-in user confirms on the
-- claim page: code_hash holds random bytes until then (no code matches it),
-- confirmed_at is NULL until then, and code_serial counts the codes shown,
-- so a re-sent confirm form (a reload) cannot mint another code silently.
ALTER TABLE ceremony_attempts ADD COLUMN mode TEXT NOT NULL DEFAULT 'user_code';
ALTER TABLE ceremony_attempts ADD COLUMN confirmed_at INTEGER;
ALTER TABLE ceremony_attempts ADD COLUMN code_serial INTEGER NOT NULL DEFAULT 0;
