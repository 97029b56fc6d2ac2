package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// JoinInvite creates the relationship an invite describes, stores its
// verified bundle, and marks the invite's nonce used, in one transaction:
// either all of it happens or none. It returns an error wrapping
// datastore.ErrInviteUsed if the nonce was used before, or
// datastore.ErrAlreadyExists if a relationship with the trust domain exists.
func (s *Store) JoinInvite(ctx context.Context, r datastore.Relationship, b datastore.Bundle, nonce string) error {
	return s.inTx(ctx, func(tx *Tx) error {
		var usedAt int64
		err := tx.QueryRowContext(ctx, `SELECT used_at FROM used_invites WHERE nonce = ?`, nonce).Scan(&usedAt)
		switch {
		case err == nil:
			return fmt.Errorf("this invite was already used at %s: %w", fromUnixNano(usedAt).UTC().Format(time.RFC3339), datastore.ErrInviteUsed)
		case !isNoRows(err):
			return fmt.Errorf("look up invite: %w", err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM relationships WHERE trust_domain = ?`, r.TrustDomain.Name()).Scan(&n); err != nil {
			return fmt.Errorf("look up relationship with %q: %w", r.TrustDomain.Name(), err)
		}
		if n > 0 {
			return fmt.Errorf("relationship with %q: %w", r.TrustDomain.Name(), datastore.ErrAlreadyExists)
		}
		if err := writeRelationship(ctx, tx, r); err != nil {
			return err
		}
		if err := upsertFederated(ctx, tx, b); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO used_invites (nonce, trust_domain, used_at) VALUES (?, ?, ?)`,
			nonce, r.TrustDomain.Name(), unixNano(time.Now()))
		return err
	})
}
