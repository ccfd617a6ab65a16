-- What a registration's Client ID Metadata Document said when it was made
-- (issue 15): the name and logo shown on its claim pages. A row of its own,
-- written in the registration's transaction and only for registrations
-- whose client_id was a resolved document, so other registrations pay
-- nothing. A snapshot: a later change of the document does not rewrite
-- what the user was shown. Lengths are capped before insert
-- (AM_MAX_CIMD_NAME_BYTES, CIMD_URL_BYTES).
CREATE TABLE registration_clients (
    tenant          TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_name     TEXT NOT NULL DEFAULT '',
    logo_uri        TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, registration_id)
);
