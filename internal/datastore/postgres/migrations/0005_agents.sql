-- Agents that attested to the server (SPIRE's attested nodes).
CREATE TABLE attested_nodes (
    spiffe_id        TEXT    NOT NULL PRIMARY KEY,
    attestation_type TEXT    NOT NULL,
    serial           TEXT    NOT NULL DEFAULT '', -- current X509-SVID, decimal; '' = banned
    not_after        BIGINT  NOT NULL DEFAULT 0,  -- unix nanoseconds
    new_serial       TEXT    NOT NULL DEFAULT '', -- set by a renewal until the agent presents it
    new_not_after    BIGINT  NOT NULL DEFAULT 0,  -- unix nanoseconds
    can_reattest     INTEGER NOT NULL DEFAULT 0,
    agent_version    TEXT    NOT NULL DEFAULT '',
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

-- A node's selectors, one row each (see the sqlite engine's 0005).
CREATE TABLE attested_node_selectors (
    spiffe_id TEXT NOT NULL REFERENCES attested_nodes (spiffe_id),
    type      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (spiffe_id, type, value)
);
CREATE INDEX attested_node_selectors_by_selector ON attested_node_selectors (type, value);

-- Join tokens not used yet: consuming one deletes its row.
CREATE TABLE join_tokens (
    token      TEXT    NOT NULL PRIMARY KEY,
    expires_at BIGINT  NOT NULL -- unix nanoseconds
);
CREATE INDEX join_tokens_by_expiry ON join_tokens (expires_at);
