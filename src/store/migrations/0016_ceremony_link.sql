-- The first-link gate of v0.7's ID-JAG claim (issue 14): a user_code
-- attempt started by a provider's ID-JAG that matched an existing account
-- keeps the subject it would link, so the owner's confirmation creates the
-- (iss, sub, aud) delegation with the claim. NULL: an attempt of no subject.
ALTER TABLE ceremony_attempts ADD COLUMN link_iss TEXT;
ALTER TABLE ceremony_attempts ADD COLUMN link_sub TEXT;
