-- Local authorities: X.509 CAs and JWT signing keys with their lifecycle.
CREATE TABLE authorities (
    kind              TEXT    NOT NULL CHECK (kind IN ('x509', 'jwt')),
    id                TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('prepared', 'active', 'old', 'external')),
    tainted           INTEGER NOT NULL DEFAULT 0,
    key_name          TEXT    NOT NULL,
    certificate_chain BLOB,
    public_key        BLOB    NOT NULL,
    upstream_skid     TEXT    NOT NULL DEFAULT '',
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    prepared_at       INTEGER NOT NULL DEFAULT 0,
    activated_at      INTEGER NOT NULL DEFAULT 0,
    deactivated_at    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id)
);

-- At most one active and one prepared authority of each kind.
CREATE UNIQUE INDEX authorities_one_active ON authorities (kind) WHERE state = 'active';
CREATE UNIQUE INDEX authorities_one_prepared ON authorities (kind) WHERE state = 'prepared';

-- Bundles: the local one (local = 1, exactly one row) and federated ones.
CREATE TABLE bundles (
    trust_domain TEXT    NOT NULL PRIMARY KEY,
    local        INTEGER NOT NULL DEFAULT 0,
    document     BLOB    NOT NULL,
    sequence     INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX bundles_one_local ON bundles (local) WHERE local = 1;

-- Audit trail of authority changes.
CREATE TABLE authority_journal (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    authority_id TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    detail       TEXT    NOT NULL DEFAULT ''
);
