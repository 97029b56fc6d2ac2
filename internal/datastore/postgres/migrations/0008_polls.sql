-- What treaty last learned polling each partner, so that a restart (during
-- a partner's outage, say) does not forget when it last succeeded.
CREATE TABLE partner_polls (
    trust_domain         TEXT    NOT NULL PRIMARY KEY,
    last_attempt         BIGINT  NOT NULL, -- unix nanoseconds, 0 = never
    last_success         BIGINT  NOT NULL, -- unix nanoseconds, 0 = never
    consecutive_failures INTEGER NOT NULL,
    last_error           TEXT    NOT NULL,
    last_reason          TEXT    NOT NULL
);
