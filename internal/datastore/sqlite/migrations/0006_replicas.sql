-- What several replicas sharing one database coordinate through (used by
-- the postgres engine's deployments; present in both so that the schema
-- versions stay the same).

-- Leases: who does a job (polls a partner, rotates the CA) until when.
CREATE TABLE leases (
    name       TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL -- unix nanoseconds
);

-- The revision of the local authorities: every authority change raises it,
-- and one computed from an older revision is refused.
CREATE TABLE authority_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO authority_revision (id, revision) VALUES (1, 0);

-- The CA's private keys, sealed (AES-256-GCM) with a key only the replicas
-- hold, when they live in the database rather than in each data_dir.
CREATE TABLE sealed_keys (
    name       TEXT    NOT NULL PRIMARY KEY,
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);
