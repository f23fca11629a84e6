-- +goose Up
-- The live replicas (mailproc/pgqueue): each replica upserts its row with
-- its heartbeat, deletes it when it stops gracefully, and counts the rows
-- whose heartbeat is recent to take its share of the SES sending rate.
-- Rows of replicas that died are pruned an hour after their last beat.
CREATE TABLE relay_replicas (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE relay_replicas;
