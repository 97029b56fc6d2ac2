package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// batchRows is how many rows one INSERT writes: few enough to stay far
// below either engine's limit of bound parameters (entries has 15
// columns), many enough to save most round trips to PostgreSQL.
const batchRows = 200

// writer inserts rows into the target within the copy's transaction.
type writer struct {
	tx     *sql.Tx
	engine string
}

// copyTable copies every row of t from the source, replacing the rows the
// schema seeds, then moves the table's identity sequence past the copied
// values.
func (w *writer) copyTable(ctx context.Context, from *Database, t table) error {
	if t.seeded {
		if _, err := w.tx.ExecContext(ctx, `DELETE FROM `+t.name); err != nil { //nolint:gosec // table names come from schema
			return err
		}
	}
	var batch [][]any
	err := from.eachRow(ctx, t, func(row []any) error {
		if batch = append(batch, row); len(batch) < batchRows {
			return nil
		}
		err := w.insert(ctx, t, batch)
		batch = batch[:0]
		return err
	})
	if err != nil {
		return err
	}
	if err := w.insert(ctx, t, batch); err != nil {
		return err
	}
	return w.resetIdentity(ctx, t)
}

// insert writes rows into t with one statement, the identity column's
// values included.
func (w *writer) insert(ctx context.Context, t table, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString("INSERT INTO " + t.name + " (" + strings.Join(t.names(), ", ") + ")")
	if t.identity != "" && w.engine == Postgres {
		q.WriteString(" OVERRIDING SYSTEM VALUE") // the column is GENERATED ALWAYS
	}
	q.WriteString(" VALUES ")
	args := make([]any, 0, len(rows)*len(t.columns))
	for i, row := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(")
		for j, v := range row {
			if j > 0 {
				q.WriteString(", ")
			}
			args = append(args, v)
			q.WriteString(w.placeholder(len(args)))
		}
		q.WriteString(")")
	}
	_, err := w.tx.ExecContext(ctx, q.String(), args...)
	return err
}

func (w *writer) placeholder(n int) string {
	if w.engine == Postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// resetIdentity makes the database generate values above those copied:
// PostgreSQL's identity sequence does not move when values are given
// explicitly. (SQLite's AUTOINCREMENT takes the largest value inserted
// into account by itself.)
func (w *writer) resetIdentity(ctx context.Context, t table) error {
	if t.identity == "" || w.engine != Postgres {
		return nil
	}
	_, err := w.tx.ExecContext(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%[1]s', '%[2]s'), COALESCE(MAX(%[2]s), 0) + 1, false) FROM %[1]s`,
		t.name, t.identity))
	if err != nil {
		return fmt.Errorf("move the sequence of %s.%s past the copied values: %w", t.name, t.identity, err)
	}
	return nil
}
