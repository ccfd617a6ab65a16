-- The durable mail queue: a claim mail is a row written in the same
-- transaction as its claim attempt, and a mail worker sends it. `message`
-- is the rendered RFC 5322 message (it carries the claim link with the
-- attempt token): it lives only until the mail is sent (the row is then
-- deleted) or given up (the column is set to NULL). Rows that failed for
-- good stay, without the message, as the record an operator looks at.
CREATE TABLE mail_queue (
    tenant      TEXT NOT NULL,
    id          INTEGER PRIMARY KEY,
    attempt_id  TEXT NOT NULL,
    rcpt        TEXT NOT NULL,
    message     BLOB,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'failed')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    tries       INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX mail_queue_due ON mail_queue (tenant, status, next_at);
