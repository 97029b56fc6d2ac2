package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Queries that read nodes and their selectors in one statement, one row per
// selector (see queryNodes).
const (
	selectNodes = `SELECT n.spiffe_id, n.attestation_type, n.serial, n.not_after, n.new_serial, n.new_not_after,
		n.can_reattest, n.agent_version, n.created_at, n.updated_at, sel.type, sel.value
		FROM attested_nodes n LEFT JOIN attested_node_selectors sel ON sel.spiffe_id = n.spiffe_id`
	listNodes = selectNodes + ` ORDER BY n.spiffe_id`
	readNode  = selectNodes + ` WHERE n.spiffe_id = ?`
)

// CreateAttestedNode stores a new attested node and its selectors in one
// transaction and returns it as stored: selectors sorted and without
// duplicates, CreatedAt and UpdatedAt now. It returns an error wrapping
// datastore.ErrAlreadyExists if a node with the SPIFFE ID exists.
func (s *Store) CreateAttestedNode(ctx context.Context, n datastore.AttestedNode) (datastore.AttestedNode, error) {
	if n.SPIFFEID.IsZero() {
		return n, errors.New("store attested node: no SPIFFE ID")
	}
	n.Selectors = sortSelectors(n.Selectors)
	n.CreatedAt = time.Now().UTC()
	n.UpdatedAt = n.CreatedAt
	err := s.inTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO attested_nodes (spiffe_id, attestation_type, serial, not_after,
			new_serial, new_not_after, can_reattest, agent_version, updated_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (spiffe_id) DO NOTHING`,
			append(nodeArgs(n), unixNano(n.CreatedAt))...)
		if err != nil {
			return fmt.Errorf("store attested node %q: %w", n.SPIFFEID, err)
		}
		if k, err := res.RowsAffected(); err != nil || k == 0 {
			return fmt.Errorf("attested node %q: %w", n.SPIFFEID, datastore.ErrAlreadyExists)
		}
		return insertNodeSelectors(ctx, tx, n)
	})
	return n, err
}

// AttestedNode returns the attested node with id and its selectors, or an
// error wrapping datastore.ErrNotFound.
func (s *Store) AttestedNode(ctx context.Context, id spiffeid.ID) (datastore.AttestedNode, error) {
	nodes, err := s.queryNodes(ctx, readNode, id.String())
	if err != nil {
		return datastore.AttestedNode{}, fmt.Errorf("read attested node %q: %w", id, err)
	}
	if len(nodes) == 0 {
		return datastore.AttestedNode{}, fmt.Errorf("attested node %q: %w", id, datastore.ErrNotFound)
	}
	return nodes[0], nil
}

// ListAttestedNodes returns every attested node with its selectors, ordered
// by SPIFFE ID, as one consistent snapshot (none when there are none, not
// an error).
func (s *Store) ListAttestedNodes(ctx context.Context) ([]datastore.AttestedNode, error) {
	nodes, err := s.queryNodes(ctx, listNodes)
	if err != nil {
		return nil, fmt.Errorf("list attested nodes: %w", err)
	}
	return nodes, nil
}

// UpdateAttestedNode replaces every field of the stored node but its SPIFFE
// ID and creation time with n's, selectors included, in one transaction,
// and returns it as stored (UpdatedAt now). It is a plain replace, the last
// writer wins: a caller that reads a node, changes it and writes it back
// serialises those steps itself (BanAttestedNode and PromoteNewSerial need
// not). It returns an error wrapping datastore.ErrNotFound if there is none.
func (s *Store) UpdateAttestedNode(ctx context.Context, n datastore.AttestedNode) (datastore.AttestedNode, error) {
	n.Selectors = sortSelectors(n.Selectors)
	n.UpdatedAt = time.Now().UTC()
	err := s.inTx(ctx, func(tx *Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `UPDATE attested_nodes SET attestation_type = ?2, serial = ?3,
			not_after = ?4, new_serial = ?5, new_not_after = ?6, can_reattest = ?7, agent_version = ?8, updated_at = ?9
			WHERE spiffe_id = ?1 RETURNING created_at`, nodeArgs(n)...).Scan(&created)
		if isNoRows(err) {
			return fmt.Errorf("attested node %q: %w", n.SPIFFEID, datastore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store attested node %q: %w", n.SPIFFEID, err)
		}
		n.CreatedAt = fromUnixNano(created)
		if err := deleteNodeSelectors(ctx, tx, n.SPIFFEID); err != nil {
			return err
		}
		return insertNodeSelectors(ctx, tx, n)
	})
	return n, err
}

// DeleteAttestedNode deletes the attested node with id and its selectors in
// one transaction, or returns an error wrapping datastore.ErrNotFound.
func (s *Store) DeleteAttestedNode(ctx context.Context, id spiffeid.ID) error {
	return s.inTx(ctx, func(tx *Tx) error {
		if err := deleteNodeSelectors(ctx, tx, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM attested_nodes WHERE spiffe_id = ?`, id.String())
		if err != nil {
			return fmt.Errorf("delete attested node %q: %w", id, err)
		}
		return nodeChanged(res, id)
	})
}

// BanAttestedNode bans the attested node with id: it clears the current and
// the new serial number (and the new expiry), so that no SVID of the agent
// is accepted again, and keeps the record and its selectors. Banning a
// banned node changes nothing. It is one statement, so atomic; it returns
// an error wrapping datastore.ErrNotFound if there is no such node.
func (s *Store) BanAttestedNode(ctx context.Context, id spiffeid.ID) error {
	res, err := s.db.ExecContext(ctx, `UPDATE attested_nodes SET serial = '', new_serial = '', new_not_after = 0,
		updated_at = ? WHERE spiffe_id = ?`, unixNano(time.Now()), id.String())
	if err != nil {
		return fmt.Errorf("ban attested node %q: %w", id, err)
	}
	return nodeChanged(res, id)
}

// PromoteNewSerial makes the node's new serial number and expiry its current
// ones and clears the new ones, in one statement, if serial is the new
// serial number: an agent presenting its renewed SVID for the first time.
// It reports whether it did; false, without error, when serial is not the
// new serial number (or there is none, as when the node is banned). It
// returns an error wrapping datastore.ErrNotFound if there is no such node.
func (s *Store) PromoteNewSerial(ctx context.Context, id spiffeid.ID, serial string) (bool, error) {
	var promoted bool
	err := s.inTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE attested_nodes SET serial = new_serial, not_after = new_not_after,
			new_serial = '', new_not_after = 0, updated_at = ? WHERE spiffe_id = ? AND new_serial = ? AND new_serial != ''`,
			unixNano(time.Now()), id.String(), serial)
		if err != nil {
			return fmt.Errorf("promote new serial of attested node %q: %w", id, err)
		}
		if k, err := res.RowsAffected(); err == nil && k == 1 {
			promoted = true
			return nil
		}
		return nodeExists(ctx, tx, id)
	})
	return promoted, err
}

// nodeArgs are n's columns in the order of the INSERT and UPDATE above.
func nodeArgs(n datastore.AttestedNode) []any {
	return []any{n.SPIFFEID.String(), n.AttestationType, n.SerialNumber, unixNano(n.NotAfter),
		n.NewSerialNumber, unixNano(n.NewNotAfter), boolInt(n.CanReattest), n.AgentVersion, unixNano(n.UpdatedAt)}
}

func insertNodeSelectors(ctx context.Context, tx *Tx, n datastore.AttestedNode) error {
	for _, sel := range n.Selectors {
		_, err := tx.ExecContext(ctx, `INSERT INTO attested_node_selectors (spiffe_id, type, value) VALUES (?, ?, ?)`,
			n.SPIFFEID.String(), sel.Type, sel.Value)
		if err != nil {
			return fmt.Errorf("store selectors of attested node %q: %w", n.SPIFFEID, err)
		}
	}
	return nil
}

func deleteNodeSelectors(ctx context.Context, tx *Tx, id spiffeid.ID) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM attested_node_selectors WHERE spiffe_id = ?`, id.String()); err != nil {
		return fmt.Errorf("delete selectors of attested node %q: %w", id, err)
	}
	return nil
}

// nodeChanged turns a statement that touched no node into ErrNotFound.
func nodeChanged(res sql.Result, id spiffeid.ID) error {
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return fmt.Errorf("attested node %q: %w", id, datastore.ErrNotFound)
	}
	return nil
}

func nodeExists(ctx context.Context, tx *Tx, id spiffeid.ID) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM attested_nodes WHERE spiffe_id = ?`, id.String()).Scan(&one)
	if isNoRows(err) {
		return fmt.Errorf("attested node %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("look up attested node %q: %w", id, err)
	}
	return nil
}

// queryNodes runs query, listNodes or readNode, and gathers each node's
// rows: one statement, so the nodes and their selectors come from one
// snapshot of the database.
func (s *Store) queryNodes(ctx context.Context, query string, args ...any) ([]datastore.AttestedNode, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []datastore.AttestedNode
	var last string
	for rows.Next() {
		n, id, sel, err := scanNodeRow(rows)
		if err != nil {
			return nil, err
		}
		if len(out) == 0 || id != last {
			out, last = append(out, n), id
		}
		if sel != nil {
			out[len(out)-1].Selectors = append(out[len(out)-1].Selectors, *sel)
		}
	}
	for i := range out {
		out[i].Selectors = sortSelectors(out[i].Selectors)
	}
	return out, rows.Err()
}

// scanNodeRow reads one row of queryNodes: the node, its stored SPIFFE ID
// and one of its selectors, nil if it has none.
func scanNodeRow(row scanner) (datastore.AttestedNode, string, *datastore.Selector, error) {
	var n datastore.AttestedNode
	var id string
	var notAfter, newNotAfter, created, updated int64
	var selType, selValue sql.NullString
	err := row.Scan(&id, &n.AttestationType, &n.SerialNumber, &notAfter, &n.NewSerialNumber, &newNotAfter,
		&n.CanReattest, &n.AgentVersion, &created, &updated, &selType, &selValue)
	if err != nil {
		return n, id, nil, err
	}
	if n.SPIFFEID, err = spiffeid.FromString(id); err != nil {
		return n, id, nil, fmt.Errorf("stored SPIFFE ID %q: %w", id, err)
	}
	n.NotAfter, n.NewNotAfter = fromUnixNano(notAfter), fromUnixNano(newNotAfter)
	n.CreatedAt, n.UpdatedAt = fromUnixNano(created), fromUnixNano(updated)
	if !selType.Valid {
		return n, id, nil, nil
	}
	return n, id, &datastore.Selector{Type: selType.String, Value: selValue.String}, nil
}
