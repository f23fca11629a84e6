-- Managed aliases (the admin API's) and the version number every replica
-- polls to learn of a change. Portable SQL: SQLite and PostgreSQL.

-- +goose Up
CREATE TABLE managed_aliases (
    address      VARCHAR(320) PRIMARY KEY,
    forward_to   TEXT         NOT NULL,
    state        VARCHAR(32)  NOT NULL,
    description  TEXT         NOT NULL DEFAULT '',
    created_ms   BIGINT       NOT NULL,
    forwarded    BIGINT       NOT NULL DEFAULT 0,
    blocked      BIGINT       NOT NULL DEFAULT 0,
    replied      BIGINT       NOT NULL DEFAULT 0,
    spam         BIGINT       NOT NULL DEFAULT 0,
    last_used_ms BIGINT       NOT NULL DEFAULT 0
);

CREATE TABLE managed_aliases_version (
    id      INTEGER PRIMARY KEY,
    version BIGINT  NOT NULL
);

INSERT INTO managed_aliases_version (id, version) VALUES (1, 0);

-- +goose Down
DROP TABLE managed_aliases_version;
DROP TABLE managed_aliases;
