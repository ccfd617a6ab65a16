-- authmd schema, version 1. Every table carries a tenant and every lookup
-- matches it. Secrets (credentials, claim tokens, attempt tokens, OTPs) are
-- stored only as SHA-256 hashes, found through unique indexes.

CREATE TABLE users (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	email		TEXT,			-- lower-cased; verified by us or a trusted provider
	phone		TEXT,
	created_at	INTEGER NOT NULL,
	created_by_agent INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX users_email ON users (tenant, email) WHERE email IS NOT NULL;
CREATE INDEX users_phone ON users (tenant, phone) WHERE phone IS NOT NULL;

-- kind: anonymous | email | agent   status: unclaimed | pending_claim | claimed | expired | revoked
CREATE TABLE registrations (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	kind		TEXT NOT NULL,
	status		TEXT NOT NULL,
	claim_token_hash BLOB,
	email		TEXT,			-- the address asserted at registration (email kind)
	credential_type	TEXT NOT NULL,		-- requested type; issued at claim for the email kind
	user_id		TEXT,
	created_at	INTEGER NOT NULL,
	expires_at	INTEGER NOT NULL,	-- the claim window; claimed rows ignore it
	claimed_at	INTEGER,
	ip		TEXT,
	PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX registrations_claim ON registrations (tenant, claim_token_hash)
	WHERE claim_token_hash IS NOT NULL;
CREATE INDEX registrations_sweep ON registrations (tenant, status, expires_at);

-- status: open | superseded | completed
CREATE TABLE claim_attempts (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	registration_id	TEXT NOT NULL,
	email		TEXT NOT NULL,
	token_hash	BLOB NOT NULL,
	status		TEXT NOT NULL,
	created_at	INTEGER NOT NULL,
	expires_at	INTEGER NOT NULL,
	otp_hash	BLOB,			-- NULL: no code shown yet, or burned
	otp_expires_at	INTEGER,
	otp_failures	INTEGER NOT NULL DEFAULT 0,
	ip		TEXT,
	PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX claim_attempts_token ON claim_attempts (tenant, token_hash);
CREATE INDEX claim_attempts_reg ON claim_attempts (tenant, registration_id, status);

-- type: api_key | access_token   source: anonymous | email | id_jag
CREATE TABLE credentials (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	hash		BLOB NOT NULL,
	type		TEXT NOT NULL,
	scopes		TEXT NOT NULL,
	source		TEXT NOT NULL,
	registration_id	TEXT NOT NULL,
	user_id		TEXT,
	iss		TEXT,
	sub		TEXT,
	aud		TEXT,
	created_at	INTEGER NOT NULL,
	expires_at	INTEGER,		-- NULL: does not expire (api_key)
	revoked_at	INTEGER,
	PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX credentials_hash ON credentials (tenant, hash);
CREATE INDEX credentials_reg ON credentials (tenant, registration_id);
CREATE INDEX credentials_user ON credentials (tenant, user_id);

CREATE TABLE delegations (
	tenant		TEXT NOT NULL,
	iss		TEXT NOT NULL,
	sub		TEXT NOT NULL,
	aud		TEXT NOT NULL,
	user_id		TEXT NOT NULL,
	registration_id	TEXT NOT NULL,
	created_at	INTEGER NOT NULL,
	PRIMARY KEY (tenant, iss, sub, aud)
);

CREATE TABLE seen_jti (
	tenant		TEXT NOT NULL,
	iss		TEXT NOT NULL,
	jti		TEXT NOT NULL,
	expires_at	INTEGER NOT NULL,
	PRIMARY KEY (tenant, iss, jti)
);
CREATE INDEX seen_jti_expiry ON seen_jti (expires_at);

CREATE TABLE audit_events (
	seq		INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant		TEXT NOT NULL,
	at		INTEGER NOT NULL,
	event		TEXT NOT NULL,
	registration_id	TEXT,
	data		TEXT NOT NULL		-- the JSON line also sent to the audit sink
);
CREATE INDEX audit_events_reg ON audit_events (tenant, registration_id);
