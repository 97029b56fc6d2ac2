// Package migrate copies a treaty datastore into another, offline: every
// table of the schema, in one transaction on the target, at the same
// schema version, into a target that holds no records yet; then it reads
// both back and compares them table by table (row counts and a digest of
// every row). It moves a single node's SQLite database into the
// PostgreSQL database that replicas share, and back.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
)

// Result is what a copy moved and verified.
type Result struct {
	// SchemaVersion is the version of both schemas.
	SchemaVersion int `json:"schema_version"`
	// Tables sums up the target's tables, read back.
	Tables []TableDigest `json:"tables"`
}

// Rows returns how many rows the tables hold together.
func (r Result) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Rows
	}
	return n
}

// Copy copies every record of from into to, in one transaction on to, and
// then verifies the copy (see Verify). Both must be at the same schema
// version, this treaty's, and to must hold no records: Copy refuses
// otherwise, saying which database to upgrade or that to is not empty.
// from is only read.
func Copy(ctx context.Context, from, to *Database) (Result, error) {
	version, err := sameVersion(ctx, from, to)
	if err != nil {
		return Result{}, err
	}
	for _, db := range []*Database{from, to} {
		if err := checkSchema(ctx, db); err != nil {
			return Result{}, err
		}
	}
	if err := copyTables(ctx, from, to); err != nil {
		return Result{}, err
	}
	tables, err := Verify(ctx, from, to)
	return Result{SchemaVersion: version, Tables: tables}, err
}

// sameVersion returns the schema version of both databases, or an error
// that says which one to upgrade.
func sameVersion(ctx context.Context, from, to *Database) (int, error) {
	fv, err := sqlstore.SchemaVersion(ctx, from.db)
	if err != nil {
		return 0, fmt.Errorf("%s is not a treaty database: %w", from, err)
	}
	tv, err := sqlstore.SchemaVersion(ctx, to.db)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", to, err)
	}
	if fv == tv {
		return fv, nil
	}
	older, newer, role := from, tv, "source"
	if tv < fv {
		older, newer, role = to, fv, "target"
	}
	return 0, fmt.Errorf("the schema versions differ: the source (%s) is at version %d, the target (%s) at %d; "+
		"upgrade the %s, %s, to version %d first (start a treaty server of that version on it once: it upgrades "+
		"the schema as it starts; then stop it), then migrate again", from, fv, to, tv, role, older, newer)
}

// copyTables copies every table in one transaction on to: all of it or
// nothing.
func copyTables(ctx context.Context, from, to *Database) error {
	tx, err := to.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin a transaction on %s: %w", to, err)
	}
	w := &writer{tx: tx, engine: to.engine}
	if err := w.claim(ctx, to); err != nil {
		_ = tx.Rollback()
		return err
	}
	for _, t := range schema {
		if err := w.copyTable(ctx, from, t); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("copy table %s into %s (nothing was copied: the transaction is rolled back): %w", t.name, to, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit the copy into %s (nothing was copied): %w", to, err)
	}
	return nil
}

// errNotEmpty is wrapped by the error of a copy into a database that holds
// records.
var errNotEmpty = errors.New("migrate into an empty database")

// claim locks the target's tables against writers (PostgreSQL; SQLite's
// transaction holds the write lock already) and makes sure that they hold
// no records, so that nothing is mixed with what is copied.
func (w *writer) claim(ctx context.Context, to *Database) error {
	if w.engine == Postgres {
		names := make([]string, len(schema))
		for i, t := range schema {
			names[i] = t.name
		}
		if _, err := w.tx.ExecContext(ctx, `LOCK TABLE `+strings.Join(names, ", ")+` IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock the tables of %s: %w", to, err)
		}
	}
	var total int64
	var held []string
	for _, t := range schema {
		if t.seeded {
			continue
		}
		var n int64
		if err := w.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&n); err != nil { //nolint:gosec // table names come from schema
			return fmt.Errorf("count the records of %s in %s: %w", t.name, to, err)
		}
		if n > 0 {
			total += n
			held = append(held, fmt.Sprintf("%s: %d", t.name, n))
		}
	}
	if total > 0 {
		return fmt.Errorf("the target (%s) already holds %d records (%s); %w", to, total, strings.Join(held, ", "), errNotEmpty)
	}
	return nil
}
