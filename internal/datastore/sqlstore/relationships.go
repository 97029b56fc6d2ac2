package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

const relationshipColumns = `trust_domain, endpoint_urls, profile, endpoint_spiffe_id, managed_by, created_at, updated_at`

// ListRelationships returns every relationship ordered by trust domain.
func (s *Store) ListRelationships(ctx context.Context) ([]datastore.Relationship, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+relationshipColumns+` FROM relationships ORDER BY trust_domain`)
	if err != nil {
		return nil, fmt.Errorf("list relationships: %w", err)
	}
	defer rows.Close()
	var out []datastore.Relationship
	for rows.Next() {
		r, err := scanRelationship(rows)
		if err != nil {
			return nil, fmt.Errorf("list relationships: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list relationships: %w", err)
	}
	return out, nil
}

// Relationship returns the relationship with td, or an error wrapping
// datastore.ErrNotFound.
func (s *Store) Relationship(ctx context.Context, td spiffeid.TrustDomain) (datastore.Relationship, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+relationshipColumns+` FROM relationships WHERE trust_domain = ?`, td.Name())
	r, err := scanRelationship(row)
	if isNoRows(err) {
		return r, fmt.Errorf("relationship with %q: %w", td.Name(), datastore.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read relationship with %q: %w", td.Name(), err)
	}
	return r, nil
}

// CreateRelationship stores a new relationship and, in the same
// transaction, its bootstrap bundle if one is given and it is newer than
// what is stored (see putBootstrap). It returns whether the bootstrap
// bundle was stored, or an error wrapping datastore.ErrAlreadyExists.
func (s *Store) CreateRelationship(ctx context.Context, r datastore.Relationship, bootstrap *datastore.Bundle) (bool, error) {
	var stored bool
	err := s.inTx(ctx, func(tx *Tx) (err error) {
		stored, err = createRelationship(ctx, tx, r, bootstrap)
		return err
	})
	return stored, err
}

func createRelationship(ctx context.Context, tx *Tx, r datastore.Relationship, bootstrap *datastore.Bundle) (bool, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM relationships WHERE trust_domain = ?`, r.TrustDomain.Name()).Scan(&n); err != nil {
		return false, fmt.Errorf("look up relationship with %q: %w", r.TrustDomain.Name(), err)
	}
	if n > 0 {
		return false, fmt.Errorf("relationship with %q: %w", r.TrustDomain.Name(), datastore.ErrAlreadyExists)
	}
	if err := writeRelationship(ctx, tx, r); err != nil {
		return false, err
	}
	return putBootstrap(ctx, tx, bootstrap)
}

// CreateRelationships creates every relationship of rels as
// CreateRelationship does, with the bootstrap bundle of the same index in
// bootstraps (nil for none), in one transaction: a batch of thousands pays
// for one fsync. Each relationship has its own savepoint, so one that fails
// (datastore.ErrAlreadyExists, say) leaves the others. It returns, per
// relationship, whether its bootstrap bundle was stored and its error.
func (s *Store) CreateRelationships(ctx context.Context, rels []datastore.Relationship, bootstraps []*datastore.Bundle) ([]bool, []error) {
	stored := make([]bool, len(rels))
	errs := make([]error, len(rels))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return stored, errs
	}
	wctx := context.WithoutCancel(ctx) // see group.do
	for lo := 0; lo < len(rels); lo += maxGroup {
		hi := min(lo+maxGroup, len(rels))
		batch := make([]*write, 0, hi-lo)
		for i := lo; i < hi; i++ {
			var boot *datastore.Bundle
			if i < len(bootstraps) {
				boot = bootstraps[i]
			}
			batch = append(batch, &write{fn: func(tx *Tx) error {
				ok, err := createRelationship(wctx, tx, rels[i], boot)
				stored[i] = ok && err == nil
				return err
			}})
		}
		got, err := s.writes.run(wctx, batch)
		for i := lo; i < hi; i++ {
			if err != nil {
				errs[i], stored[i] = err, false
				continue
			}
			errs[i] = got[i-lo]
		}
	}
	return stored, errs
}

// UpdateRelationship replaces an existing relationship (keeping its
// creation time) and stores the bootstrap bundle like CreateRelationship.
// It returns an error wrapping datastore.ErrNotFound if there is none.
func (s *Store) UpdateRelationship(ctx context.Context, r datastore.Relationship, bootstrap *datastore.Bundle) (bool, error) {
	var stored bool
	err := s.inTx(ctx, func(tx *Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT created_at FROM relationships WHERE trust_domain = ?`, r.TrustDomain.Name()).Scan(&created)
		if isNoRows(err) {
			return fmt.Errorf("relationship with %q: %w", r.TrustDomain.Name(), datastore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("look up relationship with %q: %w", r.TrustDomain.Name(), err)
		}
		r.CreatedAt = fromUnixNano(created)
		if err := writeRelationship(ctx, tx, r); err != nil {
			return err
		}
		stored, err = putBootstrap(ctx, tx, bootstrap)
		return err
	})
	return stored, err
}

// DeleteRelationship removes the relationship with td; the partner's bundle
// stays. It returns an error wrapping datastore.ErrNotFound if there is none.
func (s *Store) DeleteRelationship(ctx context.Context, td spiffeid.TrustDomain) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM relationships WHERE trust_domain = ?`, td.Name())
	if err != nil {
		return fmt.Errorf("delete relationship with %q: %w", td.Name(), err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("relationship with %q: %w", td.Name(), datastore.ErrNotFound)
	}
	s.db.notify(ctx, TopicRelationships)
	return nil
}

// PutBootstrapBundle stores b unless a bundle with an equal or higher
// sequence is stored already; it reports whether it stored b.
func (s *Store) PutBootstrapBundle(ctx context.Context, b datastore.Bundle) (bool, error) {
	var stored bool
	err := s.inTx(ctx, func(tx *Tx) error {
		var err error
		stored, err = putBootstrap(ctx, tx, &b)
		return err
	})
	return stored, err
}

// putBootstrap applies the bootstrap rule of SPIFFE federation: a bundle
// obtained out of band is stored only when we have none for the trust
// domain yet or when it is newer (higher spiffe_sequence), so it never
// replaces a fresher bundle fetched from the partner's endpoint.
func putBootstrap(ctx context.Context, tx *Tx, b *datastore.Bundle) (bool, error) {
	if b == nil {
		return false, nil
	}
	var seq sequence
	err := tx.QueryRowContext(ctx, `SELECT sequence FROM bundles WHERE trust_domain = ?`, b.TrustDomain.Name()).Scan(&seq)
	switch {
	case isNoRows(err):
	case err != nil:
		return false, fmt.Errorf("read bundle for %q: %w", b.TrustDomain.Name(), err)
	case b.Sequence <= uint64(seq):
		return false, nil
	}
	return true, upsertFederated(ctx, tx, *b)
}

func writeRelationship(ctx context.Context, tx *Tx, r datastore.Relationship) error {
	urls, err := json.Marshal(r.EndpointURLs)
	if err != nil {
		return fmt.Errorf("encode endpoint URLs: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO relationships (`+relationshipColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (trust_domain) DO UPDATE SET endpoint_urls = excluded.endpoint_urls, profile = excluded.profile,
			endpoint_spiffe_id = excluded.endpoint_spiffe_id, managed_by = excluded.managed_by, updated_at = excluded.updated_at`,
		r.TrustDomain.Name(), string(urls), r.Profile, r.EndpointSPIFFEID, r.ManagedBy, unixNano(r.CreatedAt), unixNano(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("store relationship with %q: %w", r.TrustDomain.Name(), err)
	}
	return tx.notify(ctx, TopicRelationships)
}

func scanRelationship(row scanner) (datastore.Relationship, error) {
	var r datastore.Relationship
	var td, urls string
	var created, updated int64
	if err := row.Scan(&td, &urls, &r.Profile, &r.EndpointSPIFFEID, &r.ManagedBy, &created, &updated); err != nil {
		return r, err
	}
	parsed, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return r, fmt.Errorf("stored trust domain %q: %w", td, err)
	}
	if err := json.Unmarshal([]byte(urls), &r.EndpointURLs); err != nil {
		return r, fmt.Errorf("stored endpoint URLs of %q: %w", td, err)
	}
	r.TrustDomain, r.CreatedAt, r.UpdatedAt = parsed, fromUnixNano(created), fromUnixNano(updated)
	return r, nil
}
