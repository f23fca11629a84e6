-- +goose Up
-- The queue of accepted SNS notifications (mailproc/pgqueue), one row per
-- SNS MessageId: the primary key is the one de-duplication point of every
-- replica. state:
--   pending  accepted, not finished: due, claimed by a replica, or waiting
--            to retry;
--   dead     a dead letter (payload kept for redrive);
--   done     finished: payload dropped, the row kept as the de-duplication
--            record until expires_at.
-- due_at is when a pending row may be claimed: its next attempt, or, while
-- claimed_by is set, the end of the claim's lease (extended by the holder's
-- heartbeat; a replica that died stops extending it and any replica takes
-- the row over).
CREATE TABLE relay_messages (
    id           text PRIMARY KEY,
    state        text NOT NULL CHECK (state IN ('pending', 'dead', 'done')),
    kind         text NOT NULL DEFAULT '',
    topic_arn    text NOT NULL DEFAULT '',
    payload      bytea,
    size         bigint NOT NULL DEFAULT 0,
    enqueued_at  timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt timestamptz,
    last_error   text NOT NULL DEFAULT '',
    -- destination set -> SES message id, shared by every replica
    sent         jsonb NOT NULL DEFAULT '{}'::jsonb,
    due_at       timestamptz NOT NULL,
    claimed_by   text,
    reason       text NOT NULL DEFAULT '',
    dead_at      timestamptz,
    expires_at   timestamptz
);
CREATE INDEX relay_messages_due ON relay_messages (due_at, enqueued_at) WHERE state = 'pending';
CREATE INDEX relay_messages_expiry ON relay_messages (expires_at) WHERE state = 'done';
CREATE INDEX relay_messages_dead ON relay_messages (dead_at, id) WHERE state = 'dead';

-- +goose Down
DROP TABLE relay_messages;
