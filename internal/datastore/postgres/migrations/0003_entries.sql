-- Registration entries: which workloads get which SPIFFE ID.
CREATE TABLE entries (
    id             TEXT    NOT NULL PRIMARY KEY,
    spiffe_id      TEXT    NOT NULL,
    parent_id      TEXT    NOT NULL,
    selectors      TEXT    NOT NULL, -- JSON array of {"type","value"}, sorted
    selector_key   TEXT    NOT NULL, -- the sorted selectors as one string, for uniqueness
    federates_with TEXT    NOT NULL, -- JSON array of trust domain names or "*", sorted
    x509_svid_ttl  BIGINT  NOT NULL DEFAULT 0, -- seconds
    jwt_svid_ttl   BIGINT  NOT NULL DEFAULT 0, -- seconds
    dns_names      TEXT    NOT NULL, -- JSON array
    hint           TEXT    NOT NULL DEFAULT '',
    admin          INTEGER NOT NULL DEFAULT 0,
    downstream     INTEGER NOT NULL DEFAULT 0,
    expires_at     BIGINT  NOT NULL DEFAULT 0, -- unix seconds, 0 = never
    revision       BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL
);

-- SPIRE's rule: one entry per SPIFFE ID, parent ID and selector set.
CREATE UNIQUE INDEX entries_unique ON entries (spiffe_id, parent_id, selector_key);
