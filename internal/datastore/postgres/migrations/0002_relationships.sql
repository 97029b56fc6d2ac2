-- Federation relationships with partner trust domains.
CREATE TABLE relationships (
    trust_domain       TEXT    NOT NULL PRIMARY KEY,
    endpoint_urls      TEXT    NOT NULL, -- JSON array, primary first
    profile            TEXT    NOT NULL CHECK (profile IN ('https_web', 'https_spiffe')),
    endpoint_spiffe_id TEXT    NOT NULL DEFAULT '',
    managed_by         TEXT    NOT NULL DEFAULT '',
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL
);
