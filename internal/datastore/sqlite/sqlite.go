// Package sqlite is treaty's embedded datastore: one SQLite file in WAL mode
// with synchronous commits, schema migrations embedded in the binary, and
// every multi-row change in one transaction so that a crash never leaves a
// half-applied change.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite datastore. It is safe for concurrent use.
type Store struct {
	*sqlstore.Store
	db *sql.DB
}

// maxIdleConns is how many connections stay open while idle.
const maxIdleConns = 32

// busyTimeout is how long a statement waits for the write lock; only
// treaty's own connections take it, and they hold it briefly.
const busyTimeout = 10 * time.Second

// dialect is how SQLite differs: ? placeholders, BEGIN IMMEDIATE (the
// _txlock parameter) instead of isolation levels, and one file whose
// commits are worth grouping.
var dialect = sqlstore.Dialect{Name: "sqlite", GroupWrites: true}

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
	// Keep connections open between bursts: opening one costs its pragmas
	// and a read of the schema, which under many concurrent readers (agents
	// syncing) was most of the work.
	db.SetMaxIdleConns(maxIdleConns)
	s := &Store{Store: sqlstore.New(db, dialect), db: db}
	if err := s.checkUnlocked(ctx, path); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := sqlstore.Migrate(ctx, db, dialect, Migrations()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open datastore %s: %w", path, err)
	}
	return s, nil
}

// Migrations returns the SQLite schema's migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
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
