package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// AcquireLease takes the lease called name for holder until now+ttl, or
// renews it: it succeeds when nobody holds the lease, when its holder's
// time ran out before now, or when holder holds it already. It reports
// whether holder now holds the lease. The replicas' clocks are compared,
// so they must agree (as they must for certificates anyway) to well
// within ttl.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	var held bool
	err := s.inTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4`,
			name, holder, unixNano(now.Add(ttl)), unixNano(now))
		if err != nil {
			return fmt.Errorf("acquire lease %q: %w", name, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("acquire lease %q: %w", name, err)
		}
		held = n == 1
		return nil
	})
	return held, err
}

// ReleaseLease gives up holder's lease called name, so that another
// replica may take it at once; it does nothing if holder does not hold it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder); err != nil {
		return fmt.Errorf("release lease %q: %w", name, err)
	}
	return nil
}

// Lease returns who holds the lease called name and until when, or an
// error wrapping datastore.ErrNotFound if nobody ever took it (or it was
// released). The time may have passed: the lease is then free to take.
func (s *Store) Lease(ctx context.Context, name string) (datastore.Lease, error) {
	l := datastore.Lease{Name: name}
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT holder, expires_at FROM leases WHERE name = ?`, name).Scan(&l.Holder, &expires)
	if isNoRows(err) {
		return l, fmt.Errorf("lease %q: %w", name, datastore.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("read lease %q: %w", name, err)
	}
	l.ExpiresAt = fromUnixNano(expires)
	return l, nil
}

// PutSealedKey stores a sealed private key under name; it returns an error
// wrapping datastore.ErrAlreadyExists if one is stored under that name.
func (s *Store) PutSealedKey(ctx context.Context, name string, sealed []byte) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO sealed_keys (name, sealed, created_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO NOTHING`, name, sealed, unixNano(time.Now()))
	if err != nil {
		return fmt.Errorf("store key %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("key %q: %w", name, datastore.ErrAlreadyExists)
	}
	return nil
}

// SealedKey returns the sealed private key stored under name, or an error
// wrapping datastore.ErrNotFound.
func (s *Store) SealedKey(ctx context.Context, name string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, `SELECT sealed FROM sealed_keys WHERE name = ?`, name).Scan(&sealed)
	if isNoRows(err) {
		return nil, fmt.Errorf("key %q: %w", name, datastore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read key %q: %w", name, err)
	}
	return sealed, nil
}

// DeleteSealedKey deletes the key stored under name; deleting a key that
// is not there is not an error (a retired key may be deleted by two
// replicas).
func (s *Store) DeleteSealedKey(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sealed_keys WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete key %q: %w", name, err)
	}
	return nil
}

// ListSealedKeys returns the stored keys' names and creation times (not
// the keys), sorted by name.
func (s *Store) ListSealedKeys(ctx context.Context) ([]datastore.SealedKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, created_at FROM sealed_keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var out []datastore.SealedKey
	for rows.Next() {
		var k datastore.SealedKey
		var created int64
		if err := rows.Scan(&k.Name, &created); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		k.CreatedAt = fromUnixNano(created)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}
