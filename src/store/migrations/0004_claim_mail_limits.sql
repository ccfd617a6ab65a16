-- The claim-mail flood limits count claim attempts (each attempt is one
-- mail): per address and in all within a window. These indexes keep each
-- count a bounded range scan (it stops at the limit).
CREATE INDEX claim_attempts_email ON claim_attempts (tenant, email, created_at);
CREATE INDEX claim_attempts_created ON claim_attempts (tenant, created_at);
