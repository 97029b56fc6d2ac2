package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"

	"github.com/treatyhq/treaty/internal/datastore"
)

const authorityColumns = `kind, id, state, tainted, key_name, certificate_chain, public_key,
	upstream_skid, not_before, not_after, prepared_at, activated_at, deactivated_at, published_sequence`

// ListAuthorities returns every stored local authority, X.509 first, each
// kind ordered by the time it was prepared.
func (s *Store) ListAuthorities(ctx context.Context) ([]datastore.Authority, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+authorityColumns+` FROM authorities
		ORDER BY kind DESC, prepared_at, not_before, id`)
	if err != nil {
		return nil, fmt.Errorf("list authorities: %w", err)
	}
	defer rows.Close()
	var out []datastore.Authority
	for rows.Next() {
		a, err := scanAuthority(rows)
		if err != nil {
			return nil, fmt.Errorf("list authorities: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list authorities: %w", err)
	}
	return out, nil
}

func scanAuthority(rows *sql.Rows) (datastore.Authority, error) {
	var a datastore.Authority
	var tainted int
	var notBefore, notAfter, prepared, activated, deactivated int64
	err := rows.Scan(&a.Kind, &a.ID, &a.State, &tainted, &a.KeyName, &a.CertificateChain, &a.PublicKey,
		&a.UpstreamSKID, &notBefore, &notAfter, &prepared, &activated, &deactivated, (*sequence)(&a.PublishedSequence))
	if err != nil {
		return a, err
	}
	a.Tainted = tainted != 0
	a.NotBefore, a.NotAfter = fromUnixNano(notBefore), fromUnixNano(notAfter)
	a.PreparedAt, a.ActivatedAt, a.DeactivatedAt = fromUnixNano(prepared), fromUnixNano(activated), fromUnixNano(deactivated)
	return a, nil
}

// CommitAuthorities applies change in one transaction. Deletes run before
// puts, so a change may demote the active authority and promote another.
// When change.LocalBundle is set its sequence must exceed the stored one,
// otherwise nothing is written and the error wraps
// datastore.ErrSequenceRegression.
func (s *Store) CommitAuthorities(ctx context.Context, change datastore.AuthorityChange) error {
	return s.inTx(ctx, func(tx *Tx) error {
		if err := raiseRevision(ctx, tx, change.IfRevision); err != nil {
			return err
		}
		if err := tx.notify(ctx, TopicAuthorities); err != nil {
			return err
		}
		for _, ref := range change.Delete {
			if _, err := tx.ExecContext(ctx, `DELETE FROM authorities WHERE kind = ? AND id = ?`, ref.Kind, ref.ID); err != nil {
				return fmt.Errorf("delete authority %s %s: %w", ref.Kind, ref.ID, err)
			}
		}
		if err := putAuthorities(ctx, tx, change.Put); err != nil {
			return err
		}
		for _, e := range change.Journal {
			if _, err := tx.ExecContext(ctx, `INSERT INTO authority_journal (at, kind, authority_id, event, detail)
				VALUES (?, ?, ?, ?, ?)`, unixNano(e.At), e.Kind, e.AuthorityID, e.Event, e.Detail); err != nil {
				return fmt.Errorf("journal authority event: %w", err)
			}
		}
		if change.LocalBundle != nil {
			return putLocalBundle(ctx, tx, *change.LocalBundle)
		}
		return nil
	})
}

// AuthorityRevision returns the revision of the local authorities, which
// every CommitAuthorities raises by one. Read it before ListAuthorities:
// a change committed in between then makes the next guarded change fail
// (and be decided again), never succeed on stale authorities.
func (s *Store) AuthorityRevision(ctx context.Context) (uint64, error) {
	var rev int64
	if err := s.db.QueryRowContext(ctx, `SELECT revision FROM authority_revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read authority revision: %w", err)
	}
	return uint64(rev), nil //nolint:gosec // never negative: it starts at 0 and only rises
}

// raiseRevision checks the stored revision against want, if given, and
// raises it.
func raiseRevision(ctx context.Context, tx *Tx, want *uint64) error {
	var rev int64
	if err := tx.QueryRowContext(ctx, `SELECT revision FROM authority_revision WHERE id = 1`).Scan(&rev); err != nil {
		return fmt.Errorf("read authority revision: %w", err)
	}
	if want != nil && uint64(rev) != *want { //nolint:gosec // never negative
		return fmt.Errorf("authority revision is %d, the change was computed from %d: %w", rev, *want, datastore.ErrAuthoritiesChanged)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE authority_revision SET revision = ? WHERE id = 1`, rev+1); err != nil {
		return fmt.Errorf("raise authority revision: %w", err)
	}
	return nil
}

// putAuthorities clears the state of every authority being put before
// writing them, so that swapping active and prepared in one change does not
// trip the one-active index halfway.
func putAuthorities(ctx context.Context, tx *Tx, put []datastore.Authority) error {
	for _, a := range put {
		if _, err := tx.ExecContext(ctx, `DELETE FROM authorities WHERE kind = ? AND id = ?`, a.Kind, a.ID); err != nil {
			return fmt.Errorf("put authority %s %s: %w", a.Kind, a.ID, err)
		}
	}
	for _, a := range put {
		_, err := tx.ExecContext(ctx, `INSERT INTO authorities (`+authorityColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.Kind, a.ID, a.State, boolInt(a.Tainted), a.KeyName, a.CertificateChain, a.PublicKey,
			a.UpstreamSKID, unixNano(a.NotBefore), unixNano(a.NotAfter),
			unixNano(a.PreparedAt), unixNano(a.ActivatedAt), unixNano(a.DeactivatedAt), sequence(a.PublishedSequence))
		if err != nil {
			return fmt.Errorf("put authority %s %s: %w", a.Kind, a.ID, err)
		}
	}
	return nil
}

func putLocalBundle(ctx context.Context, tx *Tx, b datastore.Bundle) error {
	var stored datastore.Bundle
	var td string
	err := tx.QueryRowContext(ctx, `SELECT trust_domain, document, sequence FROM bundles WHERE local = 1`).
		Scan(&td, &stored.Document, (*sequence)(&stored.Sequence))
	switch {
	case isNoRows(err):
	case err != nil:
		return fmt.Errorf("read local bundle: %w", err)
	case td != b.TrustDomain.Name():
		return fmt.Errorf("store local bundle for %q: this datastore belongs to trust domain %q", b.TrustDomain.Name(), td)
	case b.Sequence == stored.Sequence && bytes.Equal(b.Document, stored.Document):
		return nil
	case b.Sequence <= stored.Sequence:
		return fmt.Errorf("store local bundle with sequence %d over %d: %w", b.Sequence, stored.Sequence, datastore.ErrSequenceRegression)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO bundles (trust_domain, local, document, sequence, updated_at)
		VALUES (?, 1, ?, ?, ?)
		ON CONFLICT (trust_domain) DO UPDATE SET document = excluded.document,
			sequence = excluded.sequence, updated_at = excluded.updated_at`,
		b.TrustDomain.Name(), b.Document, sequence(b.Sequence), unixNano(b.UpdatedAt))
	if err != nil {
		return fmt.Errorf("store local bundle: %w", err)
	}
	return nil
}

// Journal returns the latest limit authority events, newest first.
func (s *Store) Journal(ctx context.Context, limit int) ([]datastore.JournalEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT at, kind, authority_id, event, detail
		FROM authority_journal ORDER BY seq DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	defer rows.Close()
	var out []datastore.JournalEvent
	for rows.Next() {
		var e datastore.JournalEvent
		var at int64
		if err := rows.Scan(&at, &e.Kind, &e.AuthorityID, &e.Event, &e.Detail); err != nil {
			return nil, fmt.Errorf("read journal: %w", err)
		}
		e.At = fromUnixNano(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	return out, nil
}
