// Package sqlstore implements treaty's datastore contract (datastore.Store)
// once, over database/sql, for every SQL engine treaty supports. The
// engines (sqlite, postgres) open the database, bring their own schema
// migrations and describe how their SQL differs in a Dialect; the records,
// their queries and their transactions live here, so that both engines
// behave the same and one conformance suite (datastoretest) holds them to
// it.
//
// Queries are written with ? placeholders (?N where one argument is used
// twice or out of order); a dialect with numbered placeholders gets them
// rewritten to $N once per query text.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Dialect is what an engine tells the shared store about itself.
type Dialect struct {
	// Name names the engine in errors ("sqlite", "postgres").
	Name string
	// Numbered means the engine wants $1, $2, … instead of ?.
	Numbered bool
	// TxOptions are the options of every read-write transaction.
	TxOptions *sql.TxOptions
	// Retryable reports whether a transaction failed only because it ran
	// at the same time as another one (a serialization failure or a
	// deadlock) and may simply run again; nil means never.
	Retryable func(error) bool
	// GroupWrites makes writes that arrive together share one transaction
	// (see group): worth it where a commit costs an fsync of the one file.
	GroupWrites bool
	// Lost, when set, reports an error that means the connection to the
	// database broke (a restart of the database leaves the pool's idle
	// connections broken): a transaction that failed so before its commit
	// wrote nothing and runs again on another connection. A commit that
	// failed so may or may not have happened, and is not run again.
	Lost func(error) bool
	// Unreachable, when set, turns an error that means the database could
	// not be reached into one that says so plainly (and that nothing was
	// saved), and returns nil for any other error.
	Unreachable func(error) error
	// NotifySQL, when set, is a statement that tells the other replicas
	// sharing the database that something changed: its one argument is the
	// topic (see Topic*). Run inside a transaction, it is delivered only if
	// and when the transaction commits.
	NotifySQL string
	// LockSchema, when set, takes a lock that keeps other processes from
	// migrating the schema at the same time and returns its release; it
	// runs on the connection the migrations use.
	LockSchema func(ctx context.Context, conn *sql.Conn) (release func(), err error)
}

// Store is the datastore over one database. It is safe for concurrent use.
type Store struct {
	db *DB
	// writes group-commits the writes that arrive together, if the dialect
	// asks for it.
	writes *group
}

// New returns a store over db, which the engine has opened and migrated.
func New(db *sql.DB, d Dialect) *Store {
	w := &DB{DB: db, d: &dialect{Dialect: d}}
	return &Store{db: w, writes: &group{db: w}}
}

// DB returns the database the store runs on, rewriting placeholders as
// the dialect needs: for an engine's own statements.
func (s *Store) DB() *DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// dialect is a Dialect with its cache of rewritten queries.
type dialect struct {
	Dialect
	rebound sync.Map // query text → query with $N placeholders
}

func (d *dialect) rebind(query string) string {
	if !d.Numbered {
		return query
	}
	if q, ok := d.rebound.Load(query); ok {
		return q.(string) //nolint:forcetypeassert // only strings are stored
	}
	q := numberPlaceholders(query)
	d.rebound.Store(query, q)
	return q
}

// numberPlaceholders rewrites ? to $1, $2, … in order, and ?N to $N. The
// queries this package writes hold no ? inside string literals.
func numberPlaceholders(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			b.WriteByte(query[i])
			continue
		}
		j := i + 1
		for j < len(query) && query[j] >= '0' && query[j] <= '9' {
			j++
		}
		b.WriteByte('$')
		if j > i+1 {
			b.WriteString(query[i+1 : j])
			i = j - 1
			continue
		}
		n++
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// DB is a database whose statements take ? placeholders whatever the
// engine.
type DB struct {
	*sql.DB
	d *dialect
}

// ExecContext runs a statement.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := db.DB.ExecContext(ctx, db.d.rebind(query), args...)
	return res, db.d.explain(err)
}

// QueryContext runs a query.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := db.DB.QueryContext(ctx, db.d.rebind(query), args...)
	return rows, db.d.explain(err)
}

// explain applies Unreachable to err.
func (d *dialect) explain(err error) error {
	if err == nil || d.Unreachable == nil {
		return err
	}
	if plain := d.Unreachable(err); plain != nil {
		return plain
	}
	return err
}

// QueryRowContext runs a query that returns at most one row.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return db.DB.QueryRowContext(ctx, db.d.rebind(query), args...)
}

// begin starts a read-write transaction.
func (db *DB) begin(ctx context.Context) (*Tx, error) {
	tx, err := db.BeginTx(ctx, db.d.TxOptions)
	if err != nil {
		return nil, db.d.explain(err)
	}
	return &Tx{Tx: tx, d: db.d}, nil
}

// Tx is a transaction whose statements take ? placeholders.
type Tx struct {
	*sql.Tx
	d *dialect
}

// ExecContext runs a statement.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.Tx.ExecContext(ctx, tx.d.rebind(query), args...)
}

// QueryContext runs a query.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.Tx.QueryContext(ctx, tx.d.rebind(query), args...)
}

// QueryRowContext runs a query that returns at most one row.
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.Tx.QueryRowContext(ctx, tx.d.rebind(query), args...)
}

// The topics of change notifications: what another replica must read
// again.
const (
	// TopicAuthorities: the local authorities and bundle.
	TopicAuthorities = "authorities"
	// TopicBundlePrefix + a trust domain name: that partner's bundle.
	TopicBundlePrefix = "bundle:"
	// TopicRelationships: the federation relationships.
	TopicRelationships = "relationships"
	// TopicEntries: the registration entries.
	TopicEntries = "entries"
	// TopicAll stands for every topic: a replica that may have missed
	// announcements (its connection to the database broke) reads
	// everything again.
	TopicAll = "*"
)

// notify announces a change on topic to the other replicas, when the
// transaction commits.
func (tx *Tx) notify(ctx context.Context, topic string) error {
	if tx.d.NotifySQL == "" {
		return nil
	}
	if _, err := tx.Tx.ExecContext(ctx, tx.d.rebind(tx.d.NotifySQL), topic); err != nil {
		return fmt.Errorf("announce change of %s: %w", topic, err)
	}
	return nil
}

// notify announces a change a single statement made, after it committed.
// A failure is not the writer's: the change stands, and replicas that
// missed the announcement catch up at their next periodic read.
func (db *DB) notify(ctx context.Context, topic string) {
	if db.d.NotifySQL != "" {
		_, _ = db.DB.ExecContext(ctx, db.d.rebind(db.d.NotifySQL), topic)
	}
}

// maxAttempts bounds how often a transaction that lost a race to another
// one runs again.
const maxAttempts = 12

// pause waits before attempt+1: a random time growing with attempt, so that
// two transactions that keep conflicting drift apart.
func pause(attempt int) {
	time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond)))) //nolint:gosec // jitter, not a secret
}

// inTx runs fn in a transaction and commits it if fn returns nil. A
// transaction the engine aborted because a concurrent one conflicted with
// it runs again (fn must therefore only write through tx and set its
// results afresh on every run).
func (s *Store) inTx(ctx context.Context, fn func(*Tx) error) error {
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if err = s.tryTx(ctx, fn); err == nil || !s.retryable(err) || ctx.Err() != nil {
			return err
		}
		pause(attempt)
	}
	return err
}

func (s *Store) tryTx(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return &commitError{err}
	}
	return nil
}

func (s *Store) retryable(err error) bool { return s.db.d.again(err) }

// commitError is a failure of COMMIT itself.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// again reports whether a failed transaction may simply run again: it lost
// a race to a concurrent one (the engine aborted it, commit included), or
// its connection broke before it committed.
func (d *dialect) again(err error) bool {
	if d.Retryable != nil && d.Retryable(err) {
		return true
	}
	var ce *commitError
	return d.Lost != nil && d.Lost(err) && !errors.As(err, &ce)
}

// Migrate brings the schema of db to the newest of migrations, a directory
// of files named 0001_name.sql, 0002_….sql applied in order, each in its
// own transaction with its version recorded. It refuses a database whose
// schema is newer than the newest migration: that one was written by a
// newer treaty.
func Migrate(ctx context.Context, db *sql.DB, d Dialect, migrations fs.FS) (err error) {
	w := &DB{DB: db, d: &dialect{Dialect: d}}
	files, err := migrationFiles(migrations)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	defer conn.Close()
	if d.LockSchema != nil {
		release, err := d.LockSchema(ctx, conn)
		if err != nil {
			return fmt.Errorf("lock the schema for migration: %w", err)
		}
		defer release()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	current, err := SchemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	if current > len(files) {
		return fmt.Errorf("database schema version %d is newer than this treaty supports (%d): "+
			"a newer treaty has written it; run that version (or newer) against it", current, len(files))
	}
	for v := current + 1; v <= len(files); v++ {
		if err := applyMigration(ctx, conn, w.d, migrations, v, files[v-1]); err != nil {
			return err
		}
	}
	return nil
}

// Migrations returns how many migrations dir holds: the schema version a
// fully migrated database has.
func Migrations(migrations fs.FS) (int, error) {
	files, err := migrationFiles(migrations)
	return len(files), err
}

func migrationFiles(migrations fs.FS) ([]string, error) {
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	for i, name := range names {
		want := fmt.Sprintf("%04d_", i+1)
		if !strings.HasPrefix(name, want) {
			return nil, fmt.Errorf("migration %s out of order: want prefix %s", name, want)
		}
	}
	return names, nil
}

// SchemaVersion reads the version of the newest migration applied.
func SchemaVersion(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
},
) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

func applyMigration(ctx context.Context, conn *sql.Conn, d *dialect, migrations fs.FS, version int, name string) error {
	script, err := fs.ReadFile(migrations, name)
	if err != nil {
		return fmt.Errorf("read migration %s: %w", name, err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply migration %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, string(script)); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("apply migration %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_version (version) VALUES (?)`), version); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("record migration %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply migration %s: commit: %w", name, err)
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

// noLimit stands for "no limit" in a LIMIT clause: every engine takes a
// 64-bit count there, not all take -1.
const noLimit = int64(1<<63 - 1)

var _ datastore.Store = (*Store)(nil)
