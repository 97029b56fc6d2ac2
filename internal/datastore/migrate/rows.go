package migrate

import (
	"context"
	"fmt"
	"strings"
)

// eachRow reads every row of t from db in primary-key order (byte order
// for text, whatever the database's collation) and passes its values to
// fn, each as int64, string, []byte or nil, whichever the engine.
func (db *Database) eachRow(ctx context.Context, t table, fn func(row []any) error) error {
	order := make([]string, len(t.key))
	for i, k := range t.key {
		order[i] = k
		if db.engine == Postgres && t.kindOf(k) == text {
			order[i] += ` COLLATE "C"` // SQLite compares text byte by byte
		}
	}
	query := `SELECT ` + strings.Join(t.names(), ", ") + ` FROM ` + t.name + ` ORDER BY ` + strings.Join(order, ", ")
	rows, err := db.db.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("read %s from %s: %w", t.name, db, err)
	}
	defer rows.Close()
	raw := make([]any, len(t.columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read %s from %s: %w", t.name, db, err)
		}
		row := make([]any, len(raw))
		for i, c := range t.columns {
			if row[i], err = c.normalize(raw[i]); err != nil {
				return fmt.Errorf("read %s from %s: %w", t.name, db, err)
			}
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s from %s: %w", t.name, db, err)
	}
	return nil
}

// normalize turns a value as the driver returned it into the column's Go
// type: int64, string or []byte (nil stays nil, for NULL).
func (c column) normalize(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil //nolint:nilnil // NULL is a value here
	case int64:
		if c.kind == integer {
			return v, nil
		}
	case int32:
		if c.kind == integer {
			return int64(v), nil
		}
	case string:
		switch c.kind {
		case text:
			return v, nil
		case bytes:
			return []byte(v), nil
		}
	case []byte:
		switch c.kind {
		case text:
			return string(v), nil
		case bytes:
			return v, nil
		}
	}
	return nil, fmt.Errorf("column %s holds a %T, not the %s it should", c.name, v, c.kind)
}

func (k kind) String() string {
	switch k {
	case integer:
		return "integer"
	case text:
		return "text"
	default:
		return "blob"
	}
}

// kindOf returns the kind of the column called name.
func (t table) kindOf(name string) kind {
	for _, c := range t.columns {
		if c.name == name {
			return c.kind
		}
	}
	panic("migrate: table " + t.name + " has no column " + name) // schema is static; tests cover it
}
