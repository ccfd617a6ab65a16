-- The agent-verified flow: who vouched for a registration, lookups for
-- revocation by (iss, sub, aud), and the trust list seen at the last start.

ALTER TABLE registrations ADD COLUMN iss TEXT;
ALTER TABLE registrations ADD COLUMN sub TEXT;
ALTER TABLE registrations ADD COLUMN agent_platform TEXT;
ALTER TABLE registrations ADD COLUMN agent_context_id TEXT;

CREATE INDEX credentials_subject ON credentials (tenant, iss, sub, aud)
	WHERE iss IS NOT NULL;
CREATE INDEX delegations_user ON delegations (tenant, iss, sub);

CREATE TABLE settings (
	tenant		TEXT NOT NULL,
	key		TEXT NOT NULL,
	value		TEXT NOT NULL,
	updated_at	INTEGER NOT NULL,
	PRIMARY KEY (tenant, key)
);
