-- Protocol v0.6 (issue 13): a registration's generation. A v0.6 identity
-- assertion carries the generation it was minted in; a revoked agent
-- registration that a fresh ID-JAG revives moves to the next one, so
-- assertions minted before the revocation never exchange again. A
-- registration without a row is in generation 0.

CREATE TABLE registration_generations (
	tenant		TEXT NOT NULL,
	registration_id	TEXT NOT NULL,
	gen		INTEGER NOT NULL,
	PRIMARY KEY (tenant, registration_id)
);
