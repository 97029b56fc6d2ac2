-- Invites already joined, so a token cannot be used twice.
CREATE TABLE used_invites (
    nonce        TEXT    NOT NULL PRIMARY KEY,
    trust_domain TEXT    NOT NULL,
    used_at      BIGINT  NOT NULL
);
