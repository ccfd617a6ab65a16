-- Operator blocks (issue 10, finding 5): what `authmd-server revoke`
-- revoked by issuer, subject, user or registration stays revoked, so no
-- fresh ID-JAG revives it, until `authmd-server unblock` lifts it.
-- kind: issuer | subject | user | registration
-- value: the issuer (issuer, subject), the user id or the registration id
-- sub: the provider's subject for kind subject, '' otherwise

CREATE TABLE blocks (
	tenant		TEXT NOT NULL,
	kind		TEXT NOT NULL,
	value		TEXT NOT NULL,
	sub		TEXT NOT NULL DEFAULT '',
	reason		TEXT NOT NULL,
	created_at	INTEGER NOT NULL,
	PRIMARY KEY (tenant, kind, value, sub)
);
