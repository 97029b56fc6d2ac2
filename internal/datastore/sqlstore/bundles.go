package sqlstore

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// LocalBundle returns the local trust domain's bundle, or an error wrapping
// datastore.ErrNotFound before the CA has stored one.
func (s *Store) LocalBundle(ctx context.Context) (datastore.Bundle, error) {
	row := s.db.QueryRowContext(ctx, `SELECT trust_domain, document, sequence, updated_at FROM bundles WHERE local = 1`)
	b, err := scanBundle(row)
	if isNoRows(err) {
		return b, fmt.Errorf("local bundle: %w", datastore.ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("read local bundle: %w", err)
	}
	return b, nil
}

// FederatedBundle returns the bundle stored for trust domain td, or an error
// wrapping datastore.ErrNotFound.
func (s *Store) FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error) {
	row := s.db.QueryRowContext(ctx, `SELECT trust_domain, document, sequence, updated_at
		FROM bundles WHERE local = 0 AND trust_domain = ?`, td.Name())
	b, err := scanBundle(row)
	if isNoRows(err) {
		return b, fmt.Errorf("bundle for %q: %w", td.Name(), datastore.ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("read bundle for %q: %w", td.Name(), err)
	}
	return b, nil
}

// ListFederatedBundles returns up to limit federated bundles ordered by trust
// domain name, starting after the trust domain named after ("" for the
// first page). A limit of 0 or less means no limit.
func (s *Store) ListFederatedBundles(ctx context.Context, after string, limit int) ([]datastore.Bundle, error) {
	n := int64(limit)
	if limit <= 0 {
		n = noLimit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT trust_domain, document, sequence, updated_at FROM bundles
		WHERE local = 0 AND trust_domain > ? ORDER BY trust_domain LIMIT ?`, after, n)
	if err != nil {
		return nil, fmt.Errorf("list bundles: %w", err)
	}
	defer rows.Close()
	var out []datastore.Bundle
	for rows.Next() {
		b, err := scanBundle(rows)
		if err != nil {
			return nil, fmt.Errorf("list bundles: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bundles: %w", err)
	}
	return out, nil
}

// CountBundles counts every stored bundle, the local one included.
func (s *Store) CountBundles(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM bundles`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count bundles: %w", err)
	}
	return n, nil
}

// CreateFederatedBundle stores a bundle for a trust domain that has none; it
// returns an error wrapping datastore.ErrAlreadyExists otherwise.
func (s *Store) CreateFederatedBundle(ctx context.Context, b datastore.Bundle) error {
	return s.inTx(ctx, func(tx *Tx) error {
		exists, err := bundleExists(ctx, tx, b.TrustDomain)
		if err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("bundle for %q: %w", b.TrustDomain.Name(), datastore.ErrAlreadyExists)
		}
		return upsertFederated(ctx, tx, b)
	})
}

// UpdateFederatedBundle replaces the stored bundle of b's trust domain; it
// returns an error wrapping datastore.ErrNotFound if there is none.
func (s *Store) UpdateFederatedBundle(ctx context.Context, b datastore.Bundle) error {
	return s.inTx(ctx, func(tx *Tx) error {
		exists, err := bundleExists(ctx, tx, b.TrustDomain)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("bundle for %q: %w", b.TrustDomain.Name(), datastore.ErrNotFound)
		}
		return upsertFederated(ctx, tx, b)
	})
}

// SetFederatedBundle creates or replaces the bundle of b's trust domain.
// Calls that arrive together (the refresher's workers storing partners'
// bundles) share one transaction; each returns only once its write has
// committed.
func (s *Store) SetFederatedBundle(ctx context.Context, b datastore.Bundle) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store bundle for %q: %w", b.TrustDomain.Name(), err)
	}
	wctx := context.WithoutCancel(ctx) // see group.do
	return s.writes.do(wctx, func(tx *Tx) error { return upsertFederated(wctx, tx, b) })
}

// DeleteFederatedBundle removes the bundle of trust domain td; it returns an
// error wrapping datastore.ErrNotFound if there is none.
func (s *Store) DeleteFederatedBundle(ctx context.Context, td spiffeid.TrustDomain) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM bundles WHERE local = 0 AND trust_domain = ?`, td.Name())
	if err != nil {
		return fmt.Errorf("delete bundle for %q: %w", td.Name(), err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("bundle for %q: %w", td.Name(), datastore.ErrNotFound)
	}
	s.db.notify(ctx, TopicBundlePrefix+td.Name())
	return nil
}

func bundleExists(ctx context.Context, tx *Tx, td spiffeid.TrustDomain) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bundles WHERE trust_domain = ?`, td.Name()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up bundle for %q: %w", td.Name(), err)
	}
	return n > 0, nil
}

// upsertFederated writes a federated bundle. It refuses to overwrite the
// local bundle: that one changes only through CommitAuthorities.
func upsertFederated(ctx context.Context, tx *Tx, b datastore.Bundle) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO bundles (trust_domain, local, document, sequence, updated_at)
		VALUES (?, 0, ?, ?, ?)
		ON CONFLICT (trust_domain) DO UPDATE SET document = excluded.document,
			sequence = excluded.sequence, updated_at = excluded.updated_at
		WHERE bundles.local = 0`,
		b.TrustDomain.Name(), b.Document, sequence(b.Sequence), unixNano(b.UpdatedAt))
	if err != nil {
		return fmt.Errorf("store bundle for %q: %w", b.TrustDomain.Name(), err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("store bundle for %q: it is the local trust domain", b.TrustDomain.Name())
	}
	return tx.notify(ctx, TopicBundlePrefix+b.TrustDomain.Name())
}

type scanner interface{ Scan(dest ...any) error }

func scanBundle(row scanner) (datastore.Bundle, error) {
	var b datastore.Bundle
	var td string
	var updated int64
	if err := row.Scan(&td, &b.Document, (*sequence)(&b.Sequence), &updated); err != nil {
		return b, err
	}
	parsed, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return b, fmt.Errorf("stored trust domain %q: %w", td, err)
	}
	b.TrustDomain, b.UpdatedAt = parsed, fromUnixNano(updated)
	return b, nil
}

// sequence carries a spiffe_sequence, an unsigned 64-bit integer (SPIFFE
// Trust Domain and Bundle §4.1.1), through the engines' signed 64-bit integer column
// by its bit pattern: database/sql refuses uint64 values with the high bit
// set. SQL never orders or compares sequences; the store compares them in
// Go, as uint64.
type sequence uint64

// Value implements driver.Valuer.
func (s sequence) Value() (driver.Value, error) {
	return int64(s), nil //nolint:gosec // the bit pattern is the point, see above
}

// Scan implements sql.Scanner.
func (s *sequence) Scan(v any) error {
	n, ok := v.(int64)
	if !ok {
		return fmt.Errorf("stored sequence is %T, not an integer", v)
	}
	*s = sequence(n) //nolint:gosec // the bit pattern is the point, see above
	return nil
}
