-- +goose Up
-- SES feedback state shared by every replica (mailproc/feedback/pgstore),
-- the same tables as the embedded SQLite store (mailproc/feedback/sqlitestore).
-- Paused destinations: one row per address, the pause that ends last.
CREATE TABLE feedback_paused_destinations (
    address     text PRIMARY KEY,
    until_at    timestamptz NOT NULL,
    kind        text NOT NULL,
    since_at    timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT ''
);
CREATE INDEX feedback_paused_until ON feedback_paused_destinations (until_at);
-- Complaints, once per SES feedback id.
CREATE TABLE feedback_complaints (
    alias       text NOT NULL,
    feedback_id text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (alias, feedback_id)
);
CREATE INDEX feedback_complaints_at ON feedback_complaints (alias, at);
CREATE TABLE feedback_disabled_aliases (
    alias       text PRIMARY KEY,
    at          timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT ''
);
-- Mails sent per destination and UTC day (YYYY-MM-DD), for the daily cap.
CREATE TABLE feedback_daily_sends (
    address     text NOT NULL,
    day         text NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (address, day)
);

-- +goose Down
DROP TABLE feedback_daily_sends;
DROP TABLE feedback_disabled_aliases;
DROP TABLE feedback_complaints;
DROP TABLE feedback_paused_destinations;
