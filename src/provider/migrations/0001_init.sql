-- authmd-provider schema, version 1. Session tokens are stored only as
-- SHA-256 hashes; private keys are files (mode 0600), never rows.

CREATE TABLE users (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	sub		TEXT NOT NULL,		-- the stable opaque subject put in tokens
	email		TEXT NOT NULL,
	email_verified	INTEGER NOT NULL DEFAULT 0,
	phone		TEXT,
	phone_verified	INTEGER NOT NULL DEFAULT 0,
	name		TEXT,
	created_at	INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX users_email ON users (tenant, email);
CREATE UNIQUE INDEX users_sub ON users (tenant, sub);

CREATE TABLE sessions (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	token_hash	BLOB NOT NULL,
	user_id		TEXT NOT NULL,
	created_at	INTEGER NOT NULL,
	revoked_at	INTEGER,
	PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX sessions_token ON sessions (tenant, token_hash);

-- mode: once | always   status: active | consumed | revoked
CREATE TABLE grants (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	user_id		TEXT NOT NULL,
	audience	TEXT NOT NULL,
	mode		TEXT NOT NULL,
	revocation_uri	TEXT,
	status		TEXT NOT NULL,
	created_at	INTEGER NOT NULL,
	updated_at	INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
);
CREATE INDEX grants_live ON grants (tenant, user_id, audience, status);

-- The durable queue of logout tokens to deliver. status: pending | delivered | failed
CREATE TABLE deliveries (
	tenant		TEXT NOT NULL,
	id		TEXT NOT NULL,
	grant_id	TEXT NOT NULL,
	url		TEXT NOT NULL,
	sub		TEXT NOT NULL,
	aud		TEXT NOT NULL,
	status		TEXT NOT NULL,
	attempts	INTEGER NOT NULL DEFAULT 0,
	next_at		INTEGER NOT NULL,
	http_status	INTEGER,
	last_error	TEXT,
	created_at	INTEGER NOT NULL,
	updated_at	INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
);
CREATE INDEX deliveries_due ON deliveries (tenant, status, next_at);
CREATE INDEX deliveries_grant ON deliveries (tenant, grant_id);

-- Public halves of the signing keys: the current one (retired_at NULL) and
-- retired ones, published until publish_until.
CREATE TABLE signing_keys (
	tenant		TEXT NOT NULL,
	kid		TEXT NOT NULL,
	alg		TEXT NOT NULL,
	public_jwk	TEXT NOT NULL,
	created_at	INTEGER NOT NULL,
	retired_at	INTEGER,
	publish_until	INTEGER,
	PRIMARY KEY (tenant, kid)
);
