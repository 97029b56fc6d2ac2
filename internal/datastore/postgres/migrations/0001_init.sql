-- The same schema, version by version, as the sqlite engine's migrations:
-- schema version N means the same tables in both. Times are Unix
-- nanoseconds in BIGINT and flags are 0/1 INTEGERs, as there, so that one
-- set of queries (sqlstore) serves both engines.

-- Local authorities: X.509 CAs and JWT signing keys with their lifecycle.
CREATE TABLE authorities (
    kind              TEXT    NOT NULL CHECK (kind IN ('x509', 'jwt')),
    id                TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('prepared', 'active', 'old', 'external')),
    tainted           INTEGER NOT NULL DEFAULT 0,
    key_name          TEXT    NOT NULL,
    certificate_chain BYTEA,
    public_key        BYTEA   NOT NULL,
    upstream_skid     TEXT    NOT NULL DEFAULT '',
    not_before        BIGINT  NOT NULL,
    not_after         BIGINT  NOT NULL,
    prepared_at       BIGINT  NOT NULL DEFAULT 0,
    activated_at      BIGINT  NOT NULL DEFAULT 0,
    deactivated_at    BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id)
);

-- At most one active and one prepared authority of each kind.
CREATE UNIQUE INDEX authorities_one_active ON authorities (kind) WHERE state = 'active';
CREATE UNIQUE INDEX authorities_one_prepared ON authorities (kind) WHERE state = 'prepared';

-- Bundles: the local one (local = 1, exactly one row) and federated ones.
-- sequence holds a spiffe_sequence (unsigned) by its bit pattern.
CREATE TABLE bundles (
    trust_domain TEXT    NOT NULL PRIMARY KEY,
    local        INTEGER NOT NULL DEFAULT 0,
    document     BYTEA   NOT NULL,
    sequence     BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE UNIQUE INDEX bundles_one_local ON bundles (local) WHERE local = 1;

-- Audit trail of authority changes.
CREATE TABLE authority_journal (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           BIGINT  NOT NULL,
    kind         TEXT    NOT NULL,
    authority_id TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    detail       TEXT    NOT NULL DEFAULT ''
);
