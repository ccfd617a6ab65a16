-- authmd schema, version 10: the admin API's searches (issue 12 item 6).
-- A registration is found by its user, its asserted address or its issuer
-- through an index, never a scan of the table.
CREATE INDEX registrations_user ON registrations (tenant, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX registrations_email ON registrations (tenant, email) WHERE email IS NOT NULL;
CREATE INDEX registrations_iss ON registrations (tenant, iss, sub) WHERE iss IS NOT NULL;
