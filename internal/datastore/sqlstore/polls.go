package sqlstore

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// SavePollRecords stores what the last polls of some partners found, one
// row per partner replacing the previous one, in one transaction.
func (s *Store) SavePollRecords(ctx context.Context, records []datastore.PollRecord) error {
	if len(records) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *Tx) error {
		for _, p := range records {
			_, err := tx.ExecContext(ctx, `INSERT INTO partner_polls (trust_domain, last_attempt, last_success,
				consecutive_failures, last_error, last_reason) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (trust_domain) DO UPDATE SET last_attempt = excluded.last_attempt,
					last_success = excluded.last_success, consecutive_failures = excluded.consecutive_failures,
					last_error = excluded.last_error, last_reason = excluded.last_reason`,
				p.TrustDomain.Name(), unixNano(p.LastAttempt), unixNano(p.LastSuccess), p.ConsecutiveFailures, p.LastError, p.LastReason)
			if err != nil {
				return fmt.Errorf("store poll record of %q: %w", p.TrustDomain.Name(), err)
			}
		}
		return nil
	})
}

// ListPollRecords returns every stored poll record, ordered by trust domain.
func (s *Store) ListPollRecords(ctx context.Context) ([]datastore.PollRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT trust_domain, last_attempt, last_success, consecutive_failures, last_error, last_reason
		FROM partner_polls ORDER BY trust_domain`)
	if err != nil {
		return nil, fmt.Errorf("list poll records: %w", err)
	}
	defer rows.Close()
	var out []datastore.PollRecord
	for rows.Next() {
		var p datastore.PollRecord
		var td string
		var attempt, success int64
		if err := rows.Scan(&td, &attempt, &success, &p.ConsecutiveFailures, &p.LastError, &p.LastReason); err != nil {
			return nil, fmt.Errorf("list poll records: %w", err)
		}
		if p.TrustDomain, err = spiffeid.TrustDomainFromString(td); err != nil {
			return nil, fmt.Errorf("stored trust domain %q: %w", td, err)
		}
		p.LastAttempt, p.LastSuccess = fromUnixNano(attempt), fromUnixNano(success)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list poll records: %w", err)
	}
	return out, nil
}
