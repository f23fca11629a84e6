-- +goose Up
CREATE TABLE feedback_paused_destinations (
    address     TEXT PRIMARY KEY,
    until_ns    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    since_ns    INTEGER NOT NULL,
    reason      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE feedback_complaints (
    alias       TEXT NOT NULL,
    feedback_id TEXT NOT NULL,
    at_ns       INTEGER NOT NULL,
    PRIMARY KEY (alias, feedback_id)
);
CREATE INDEX feedback_complaints_at ON feedback_complaints (alias, at_ns);
CREATE TABLE feedback_disabled_aliases (
    alias       TEXT PRIMARY KEY,
    at_ns       INTEGER NOT NULL,
    reason      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE feedback_daily_sends (
    address     TEXT NOT NULL,
    day         TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (address, day)
);

-- +goose Down
DROP TABLE feedback_daily_sends;
DROP TABLE feedback_disabled_aliases;
DROP TABLE feedback_complaints;
DROP TABLE feedback_paused_destinations;
