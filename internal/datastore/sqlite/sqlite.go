// Package sqlite is treaty's embedded datastore: one SQLite file in WAL mode
// with synchronous commits, schema migrations embedded in the binary, and
// every multi-row change in one transaction so that a crash never leaves a
// half-applied change.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite datastore. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	// writes group-commits the writes that arrive together (see group).
	writes *group
}

// busyTimeout is how long a statement waits for the write lock; only
// treaty's own connections take it, and they hold it briefly.
const busyTimeout = 10 * time.Second

// Open opens (creating if needed) the database file at path and applies any
// pending migrations. It refuses, without changing the file, one that is
// not a SQLite database, is damaged, or is locked by another process for
// longer than LockWait, each with what to do; and a database written by a
// newer treaty.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("open datastore %s: %w", path, err)
	}
	if err := checkFile(ctx, path); err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()), "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open datastore %s: %w", path, err)
	}
	s := &Store{db: db, writes: &group{db: db}}
	if err := s.checkUnlocked(ctx, path); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open datastore %s: %w", path, err)
	}
	return s, nil
}

// createPrivate creates the database file with mode 0600 before SQLite does,
// so that the file and its WAL and shared-memory companions (which SQLite
// creates with the main file's mode) are readable by the owner only.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// CheckIntegrity runs SQLite's integrity check and returns an error that
// lists what it found if the file is damaged.
func (s *Store) CheckIntegrity(ctx context.Context) error {
	problems, err := integrityProblems(ctx, s.db)
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check: %s", strings.Join(problems, "; "))
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	files, err := migrationFiles()
	if err != nil {
		return err
	}
	current, err := s.schemaVersion(ctx)
	if err != nil {
		return err
	}
	if current > len(files) {
		return fmt.Errorf("database schema version %d is newer than this treaty supports (%d): run a newer treaty", current, len(files))
	}
	for v := current + 1; v <= len(files); v++ {
		if err := s.applyMigration(ctx, v, files[v-1]); err != nil {
			return err
		}
	}
	return nil
}

func migrationFiles() ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	for i, name := range names {
		want := fmt.Sprintf("migrations/%04d_", i+1)
		if !strings.HasPrefix(name, want) {
			return nil, fmt.Errorf("migration %s out of order: want prefix %s", name, want)
		}
	}
	return names, nil
}

func (s *Store) schemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

func (s *Store) applyMigration(ctx context.Context, version int, name string) error {
	script, err := migrations.ReadFile(name)
	if err != nil {
		return fmt.Errorf("read migration %s: %w", name, err)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, string(script)); err != nil {
			return fmt.Errorf("apply migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, version); err != nil {
			return fmt.Errorf("record migration %s: %w", name, err)
		}
		return nil
	})
}

// inTx runs fn in a transaction and commits it if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// unixNano stores times as Unix nanoseconds; the zero time is stored as 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
