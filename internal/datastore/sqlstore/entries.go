package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

const entryColumns = `id, spiffe_id, parent_id, selectors, federates_with, x509_svid_ttl, jwt_svid_ttl,
	dns_names, hint, admin, downstream, expires_at, revision, created_at`

// CreateEntry stores a new entry, giving it a random UUID if it has no ID.
// It returns the stored entry, or an error wrapping
// datastore.ErrAlreadyExists when the ID is taken or an entry with the same
// SPIFFE ID, parent ID and selectors exists (the existing entry's ID is in
// the message).
func (s *Store) CreateEntry(ctx context.Context, e datastore.Entry) (datastore.Entry, error) {
	if e.ID == "" {
		e.ID = newUUID()
	}
	e.RevisionNumber = 0
	e.CreatedAt = time.Now().UTC().Truncate(time.Second)
	normalise(&e)
	err := s.inTx(ctx, func(tx *Tx) error {
		if err := checkDuplicate(ctx, tx, e); err != nil {
			return err
		}
		return writeEntry(ctx, tx, e, false)
	})
	return e, err
}

// UpdateEntry replaces an existing entry (keeping its creation time) and
// raises its revision. It returns an error wrapping datastore.ErrNotFound if
// there is none, or datastore.ErrAlreadyExists if the change would
// duplicate another entry.
func (s *Store) UpdateEntry(ctx context.Context, e datastore.Entry) (datastore.Entry, error) {
	normalise(&e)
	err := s.inTx(ctx, func(tx *Tx) error {
		old, err := readEntry(ctx, tx, e.ID)
		if err != nil {
			return err
		}
		e.CreatedAt, e.RevisionNumber = old.CreatedAt, old.RevisionNumber+1
		if err := checkDuplicate(ctx, tx, e); err != nil {
			return err
		}
		return writeEntry(ctx, tx, e, true)
	})
	return e, err
}

// DeleteEntry deletes an entry, or returns an error wrapping
// datastore.ErrNotFound.
func (s *Store) DeleteEntry(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM entries WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete entry %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("entry %q: %w", id, datastore.ErrNotFound)
	}
	s.db.notify(ctx, TopicEntries)
	return nil
}

// Entry returns the entry with id, or an error wrapping
// datastore.ErrNotFound.
func (s *Store) Entry(ctx context.Context, id string) (datastore.Entry, error) {
	return readEntry(ctx, s.db, id)
}

// ListEntries returns every entry ordered by ID.
func (s *Store) ListEntries(ctx context.Context) ([]datastore.Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+entryColumns+` FROM entries ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	defer rows.Close()
	var out []datastore.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("list entries: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	return out, nil
}

// CountEntries returns the number of entries.
func (s *Store) CountEntries(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM entries`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count entries: %w", err)
	}
	return n, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readEntry(ctx context.Context, q querier, id string) (datastore.Entry, error) {
	e, err := scanEntry(q.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM entries WHERE id = ?`, id))
	if isNoRows(err) {
		return e, fmt.Errorf("entry %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("read entry %q: %w", id, err)
	}
	return e, nil
}

// checkDuplicate refuses a second entry with the same SPIFFE ID, parent ID
// and selectors, and an ID that is taken (on create).
func checkDuplicate(ctx context.Context, tx *Tx, e datastore.Entry) error {
	var id string
	err := tx.QueryRowContext(ctx, `SELECT id FROM entries WHERE (spiffe_id = ? AND parent_id = ? AND selector_key = ? AND id != ?)`,
		e.SPIFFEID.String(), e.ParentID.String(), selectorKey(e.Selectors), e.ID).Scan(&id)
	switch {
	case isNoRows(err):
		return nil
	case err != nil:
		return fmt.Errorf("look up similar entries: %w", err)
	}
	return fmt.Errorf("entry %s has the same SPIFFE ID, parent ID and selectors: %w", id, datastore.ErrAlreadyExists)
}

func writeEntry(ctx context.Context, tx *Tx, e datastore.Entry, update bool) error {
	selectors, err := json.Marshal(selectorsJSON(e.Selectors))
	if err != nil {
		return err
	}
	federates, err := json.Marshal(nonNil(e.FederatesWith))
	if err != nil {
		return err
	}
	dns, err := json.Marshal(nonNil(e.DNSNames))
	if err != nil {
		return err
	}
	var expires int64
	if !e.ExpiresAt.IsZero() {
		expires = e.ExpiresAt.Unix()
	}
	args := []any{e.ID, e.SPIFFEID.String(), e.ParentID.String(), string(selectors), selectorKey(e.Selectors), string(federates),
		int64(e.X509SVIDTTL / time.Second), int64(e.JWTSVIDTTL / time.Second), string(dns), e.Hint, boolInt(e.Admin), boolInt(e.Downstream),
		expires, e.RevisionNumber, unixNano(e.CreatedAt)}
	var query string
	if update {
		query = `UPDATE entries SET spiffe_id = ?2, parent_id = ?3, selectors = ?4, selector_key = ?5, federates_with = ?6,
			x509_svid_ttl = ?7, jwt_svid_ttl = ?8, dns_names = ?9, hint = ?10, admin = ?11, downstream = ?12,
			expires_at = ?13, revision = ?14, created_at = ?15 WHERE id = ?1`
	} else {
		query = `INSERT INTO entries (id, spiffe_id, parent_id, selectors, selector_key, federates_with, x509_svid_ttl,
			jwt_svid_ttl, dns_names, hint, admin, downstream, expires_at, revision, created_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
			ON CONFLICT (id) DO NOTHING`
	}
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("store entry %q: %w", e.ID, err)
	}
	if n, err := res.RowsAffected(); !update && (err != nil || n == 0) {
		return fmt.Errorf("entry ID %q is taken: %w", e.ID, datastore.ErrAlreadyExists)
	}
	return tx.notify(ctx, TopicEntries)
}

func scanEntry(row scanner) (datastore.Entry, error) {
	var e datastore.Entry
	var spiffeID, parentID, selectors, federates, dns string
	var x509TTL, jwtTTL, expires, created int64
	err := row.Scan(&e.ID, &spiffeID, &parentID, &selectors, &federates, &x509TTL, &jwtTTL, &dns, &e.Hint,
		&e.Admin, &e.Downstream, &expires, &e.RevisionNumber, &created)
	if err != nil {
		return e, err
	}
	if e.SPIFFEID, err = spiffeid.FromString(spiffeID); err != nil {
		return e, fmt.Errorf("stored SPIFFE ID %q: %w", spiffeID, err)
	}
	if parentID != "" {
		if e.ParentID, err = spiffeid.FromString(parentID); err != nil {
			return e, fmt.Errorf("stored parent ID %q: %w", parentID, err)
		}
	}
	var sel []selectorJSON
	if err := json.Unmarshal([]byte(selectors), &sel); err != nil {
		return e, fmt.Errorf("stored selectors: %w", err)
	}
	for _, s := range sel {
		e.Selectors = append(e.Selectors, datastore.Selector{Type: s.Type, Value: s.Value})
	}
	if err := json.Unmarshal([]byte(federates), &e.FederatesWith); err != nil {
		return e, fmt.Errorf("stored federates_with: %w", err)
	}
	if err := json.Unmarshal([]byte(dns), &e.DNSNames); err != nil {
		return e, fmt.Errorf("stored dns_names: %w", err)
	}
	e.X509SVIDTTL, e.JWTSVIDTTL = time.Duration(x509TTL)*time.Second, time.Duration(jwtTTL)*time.Second
	if expires != 0 {
		e.ExpiresAt = time.Unix(expires, 0).UTC()
	}
	e.CreatedAt = fromUnixNano(created)
	return e, nil
}

type selectorJSON struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func selectorsJSON(sel []datastore.Selector) []selectorJSON {
	out := make([]selectorJSON, len(sel))
	for i, s := range sel {
		out[i] = selectorJSON(s)
	}
	return out
}

// normalise sorts and de-duplicates an entry's sets, so equal entries are
// stored alike.
func normalise(e *datastore.Entry) {
	e.Selectors = sortSelectors(e.Selectors)
	slices.Sort(e.FederatesWith)
	e.FederatesWith = slices.Compact(e.FederatesWith)
}

// sortSelectors returns a sorted copy of sel without duplicates, so that
// equal sets (of an entry or a node) are stored and compared alike.
func sortSelectors(sel []datastore.Selector) []datastore.Selector {
	sel = slices.Clone(sel)
	slices.SortFunc(sel, func(a, b datastore.Selector) int {
		return strings.Compare(a.Type+":"+a.Value, b.Type+":"+b.Value)
	})
	return slices.Compact(sel)
}

func selectorKey(sel []datastore.Selector) string {
	parts := make([]string, len(sel))
	for i, s := range sel {
		parts[i] = s.Type + ":" + s.Value
	}
	return strings.Join(parts, "\n")
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
