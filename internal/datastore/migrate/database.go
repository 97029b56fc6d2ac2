package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/treatyhq/treaty/internal/datastore/postgres"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
)

// The engines a Database runs on.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Database is one side of a copy: a treaty datastore, open. Close it when
// done.
type Database struct {
	engine string
	db     *sqlstore.DB
	// name says where the database is, without credentials.
	name    string
	closers []func() error
}

// String names the database, without credentials.
func (db *Database) String() string { return db.name }

// Close closes the database and releases the data directory's lock.
func (db *Database) Close() error {
	var errs []error
	for _, c := range slices.Backward(db.closers) {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// SQLiteFile names a SQLite datastore.
type SQLiteFile struct {
	// Path is the database file.
	Path string
	// Lock is the lock file a treaty server holds on its data directory
	// while it runs; empty when there is none to respect.
	Lock string
}

// OpenSource opens the database to copy from, read only: the copy never
// changes it, not even to migrate its schema (Copy refuses an older one
// instead). It refuses while a treaty server holds the data directory,
// and holds the directory itself until Close, so that none starts
// during the copy.
func (f SQLiteFile) OpenSource(ctx context.Context) (*Database, error) {
	if _, err := os.Stat(f.Path); err != nil {
		return nil, fmt.Errorf("no treaty database at %s: %w", f.Path, err)
	}
	db := &Database{engine: SQLite, name: "sqlite:" + f.Path}
	if err := db.lock(f.Lock); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	sdb, err := sql.Open("sqlite", "file:"+f.Path+"?"+q.Encode())
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", db, err)
	}
	db.closers = append(db.closers, sdb.Close)
	db.db = sqlstore.New(sdb, sqlstore.Dialect{Name: SQLite}).DB()
	if err := sdb.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", db, err)
	}
	return db, nil
}

// OpenTarget opens the database to copy into, creating it and its schema
// if needed, as a treaty server would. It refuses while a treaty server
// holds the data directory, and holds the directory itself until Close.
func (f SQLiteFile) OpenTarget(ctx context.Context) (*Database, error) {
	db := &Database{engine: SQLite, name: "sqlite:" + f.Path}
	if err := db.lock(f.Lock); err != nil {
		return nil, err
	}
	s, err := sqlite.Open(ctx, f.Path)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	db.db = s.DB()
	db.closers = append(db.closers, s.Close)
	return db, nil
}

// lock takes the data directory's lock as a treaty server does (an
// exclusive flock), without waiting: a server that holds it is running on
// the database.
func (db *Database) lock(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no server ever ran here: a server creates the file
	}
	if err != nil {
		return fmt.Errorf("open the data directory's lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("stop the treaty server using %s first; the copy is offline (the server holds %s)",
				filepath.Dir(path), path)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	db.closers = append(db.closers, f.Close)
	return nil
}

// OpenPostgres opens a PostgreSQL database, to copy from or into,
// creating the schema if it has none, as a treaty server would. Stop every
// treaty server using it first: a copy out of it is not a snapshot, and
// a copy into it needs it empty.
func OpenPostgres(ctx context.Context, cfg postgres.Config) (*Database, error) {
	s, err := postgres.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Database{engine: Postgres, db: s.DB(), name: s.Where(), closers: []func() error{s.Close}}, nil
}
