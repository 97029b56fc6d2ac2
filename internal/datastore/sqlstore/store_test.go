package sqlstore

import "testing"

func TestNumberPlaceholders(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:                                 `SELECT 1`,
		`SELECT a FROM t WHERE b = ? AND c > ?`:    `SELECT a FROM t WHERE b = $1 AND c > $2`,
		`UPDATE t SET a = ?2, b = ?3 WHERE k = ?1`: `UPDATE t SET a = $2, b = $3 WHERE k = $1`,
		`VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`: `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		`LIMIT ?`: `LIMIT $1`,
	} {
		if got := numberPlaceholders(in); got != want {
			t.Errorf("numberPlaceholders(%q) = %q, want %q", in, got, want)
		}
	}
}
