package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// CreateJoinToken stores a new join token, or returns an error wrapping
// datastore.ErrAlreadyExists if the token is stored already. A token must
// expire. Errors never quote the token: it is a secret until used.
func (s *Store) CreateJoinToken(ctx context.Context, t datastore.JoinToken) error {
	if t.Token == "" || t.ExpiresAt.IsZero() {
		return errors.New("store join token: a token and its expiry are required")
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO join_tokens (token, expires_at) VALUES (?, ?)
		ON CONFLICT (token) DO NOTHING`, t.Token, unixNano(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store join token: %w", err)
	}
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return fmt.Errorf("join token: %w", datastore.ErrAlreadyExists)
	}
	return nil
}

// ConsumeJoinToken looks up the join token and deletes it in one
// transaction, and returns it; expired or not, it is gone: the caller
// checks the expiry afterwards, so that a token is used once whatever
// happens next (SPIRE's rule). Of concurrent callers with the same token,
// one gets it. It returns an error wrapping datastore.ErrNotFound if the
// token is not stored (never created, consumed or pruned).
func (s *Store) ConsumeJoinToken(ctx context.Context, token string) (datastore.JoinToken, error) {
	t := datastore.JoinToken{Token: token}
	err := s.inTx(ctx, func(tx *Tx) error {
		var expires int64
		err := tx.QueryRowContext(ctx, `SELECT expires_at FROM join_tokens WHERE token = ?`, token).Scan(&expires)
		if isNoRows(err) {
			return fmt.Errorf("join token: %w", datastore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("look up join token: %w", err)
		}
		t.ExpiresAt = fromUnixNano(expires)
		if _, err := tx.ExecContext(ctx, `DELETE FROM join_tokens WHERE token = ?`, token); err != nil {
			return fmt.Errorf("delete join token: %w", err)
		}
		return nil
	})
	if err != nil {
		return datastore.JoinToken{}, err
	}
	return t, nil
}

// PruneJoinTokens deletes the join tokens that expired before the given
// time, in one statement, and returns how many.
func (s *Store) PruneJoinTokens(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM join_tokens WHERE expires_at < ?`, unixNano(before))
	if err != nil {
		return 0, fmt.Errorf("prune join tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune join tokens: %w", err)
	}
	return int(n), nil
}
