-- Receipts: which partner trust domain last fetched the local bundle from
-- the bundle endpoint, authenticated with an X509-SVID of its own trust
-- domain, when, and which spiffe_sequence it was served. Automatic CA
-- rotation waits for partners with a receipt to hold the next authority.
CREATE TABLE receipts (
    trust_domain TEXT    NOT NULL PRIMARY KEY,
    sequence     BIGINT  NOT NULL, -- the bit pattern of a uint64
    fetched_at   BIGINT  NOT NULL  -- unix nanoseconds
);
