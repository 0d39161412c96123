-- The mail outbox: a request that needs a mail writes a row and returns; a sender task delivers
-- it. `claim_id` and `lease_until` say which sender holds a pending mail until when; `attempts`
-- counts claims. The bodies may hold single-use links: they are wiped (NULL) once the mail is
-- sent or failed for good, and the purge pass deletes finished rows after a while.

CREATE TABLE mail_outbox (
    id              TEXT    NOT NULL PRIMARY KEY,
    message_id      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    text_body       TEXT,
    html_body       TEXT,
    -- pending, sent or failed.
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    claim_id        TEXT,
    last_error      TEXT,
    finished_at     INTEGER
) STRICT;

CREATE INDEX mail_outbox_due ON mail_outbox (state, next_attempt_at);
CREATE INDEX mail_outbox_finished ON mail_outbox (finished_at);
