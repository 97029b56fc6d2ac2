package sqlstore

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// PutReceipts records partners' fetches of the local bundle in one
// transaction. A receipt replaces the stored one for its trust domain only
// if it is later: replicas flushing what each of them served, in any
// order, leave the latest fetch.
func (s *Store) PutReceipts(ctx context.Context, receipts []datastore.Receipt) error {
	if len(receipts) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *Tx) error {
		for _, r := range receipts {
			_, err := tx.ExecContext(ctx, `INSERT INTO receipts (trust_domain, sequence, fetched_at) VALUES (?1, ?2, ?3)
				ON CONFLICT (trust_domain) DO UPDATE SET sequence = excluded.sequence, fetched_at = excluded.fetched_at
				WHERE receipts.fetched_at < excluded.fetched_at`,
				r.TrustDomain.Name(), sequence(r.Sequence), unixNano(r.FetchedAt))
			if err != nil {
				return fmt.Errorf("record the fetch of %q: %w", r.TrustDomain.Name(), err)
			}
		}
		return nil
	})
}

// ListReceipts returns the latest fetch of the local bundle of every
// partner whose federated bundle is stored, ordered by trust domain: a
// trust domain we no longer hold a bundle for is no partner, and its
// receipt is kept but not listed. None is an empty list, not an error.
func (s *Store) ListReceipts(ctx context.Context) ([]datastore.Receipt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.trust_domain, r.sequence, r.fetched_at FROM receipts r
		JOIN bundles b ON b.trust_domain = r.trust_domain AND b.local = 0 ORDER BY r.trust_domain`)
	if err != nil {
		return nil, fmt.Errorf("list receipts: %w", err)
	}
	defer rows.Close()
	var out []datastore.Receipt
	for rows.Next() {
		var (
			r       datastore.Receipt
			td      string
			fetched int64
		)
		if err := rows.Scan(&td, (*sequence)(&r.Sequence), &fetched); err != nil {
			return nil, fmt.Errorf("list receipts: %w", err)
		}
		if r.TrustDomain, err = spiffeid.TrustDomainFromString(td); err != nil {
			return nil, fmt.Errorf("list receipts: stored trust domain %q: %w", td, err)
		}
		r.FetchedAt = fromUnixNano(fetched)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list receipts: %w", err)
	}
	return out, nil
}
