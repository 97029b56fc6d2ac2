// Package postgres is treaty's datastore engine for several replicas: one
// PostgreSQL database that every replica shares, through pgx. The records
// and their queries are sqlstore's, the same as the embedded engine's; what
// is PostgreSQL's own is here: connecting, the schema migrations (applied
// once, under an advisory lock, when several replicas start together),
// serializable transactions that run again when they lose a race to
// another replica's, and the errors an operator meets at start-up.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the PostgreSQL schema's migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Config says how to reach the database.
type Config struct {
	// DSN is a connection string, URL (postgres://user@host:port/db?…) or
	// key=value form, as libpq takes it.
	DSN string
	// Password, when set, is used instead of any password in the DSN (it
	// comes from a file or the environment so that the DSN, which is
	// logged and shown, need not hold it). Without it, pgx also reads
	// PGPASSWORD and ~/.pgpass as libpq does.
	Password string
	// ConnectTimeout bounds each attempt to connect; 0 means 10 s.
	ConnectTimeout time.Duration
}

// Store is the PostgreSQL datastore. It is safe for concurrent use.
type Store struct {
	*sqlstore.Store
	db *sql.DB
	pc *pgx.ConnConfig
	// where names the server and database in errors, without credentials.
	where string
}

// maxIdleConns is how many connections a replica keeps open while idle.
// After PostgreSQL restarts each of them fails once before it is dropped,
// so a transaction may run into all of them: kept below the number of
// times a transaction runs again (sqlstore).
const maxIdleConns = 8

// channel is the LISTEN/NOTIFY channel on which replicas announce changes.
const channel = "treaty_changes"

// schemaLock is the advisory lock key under which replicas migrate the
// schema one at a time: "treaty" in ASCII.
const schemaLock = 0x747265617479

// dialect is how PostgreSQL differs: numbered placeholders, serializable
// transactions (so that two replicas' read-then-write changes, such as a
// rise of the local bundle's sequence, cannot interleave) run again when
// PostgreSQL aborts one of them, and commits not worth grouping.
var dialect = sqlstore.Dialect{
	Name:      "postgres",
	Numbered:  true,
	TxOptions: &sql.TxOptions{Isolation: sql.LevelSerializable},
	Retryable: conflict,
	Lost:      lost,
	NotifySQL: `SELECT pg_notify('` + channel + `', ?)`,
	LockSchema: func(ctx context.Context, conn *sql.Conn) (func(), error) {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, schemaLock); err != nil {
			return nil, err
		}
		return func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, schemaLock)
		}, nil
	},
}

// conflict reports a transaction PostgreSQL aborted because a concurrent
// one conflicted with it: a serialization failure or a deadlock.
func conflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// Open connects to the database, checks that it can be used and applies any
// pending migrations (waiting for another replica that is applying them).
// It refuses a database whose schema a newer treaty wrote, and says what
// is wrong, without the password, when the server cannot be reached or
// refuses the login.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("datastore.dsn: %s", redactParseError(err))
	}
	if cfg.Password != "" {
		pc.Password = cfg.Password
	}
	pc.ConnectTimeout = cfg.ConnectTimeout
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 10 * time.Second
	}
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	pc.RuntimeParams["application_name"] = "treaty"
	where := fmt.Sprintf("PostgreSQL at %s, database %q, user %q", net.JoinHostPort(pc.Host, fmt.Sprint(pc.Port)), pc.Database, pc.User)
	db := stdlib.OpenDB(*pc)
	// Keep connections open between polls: each new one costs PostgreSQL
	// a backend process and a password exchange, and the refresher's
	// workers would otherwise open and close them many times a second.
	db.SetMaxIdleConns(maxIdleConns)
	d := dialect
	d.Unreachable = func(err error) error { return unreachable(where, err) }
	s := &Store{Store: sqlstore.New(db, d), db: db, pc: pc, where: where}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, s.explain(err)
	}
	if err := sqlstore.Migrate(ctx, db, dialect, Migrations()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open datastore (%s): %w", where, err)
	}
	return s, nil
}

// Ping checks that the database answers, for readiness.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return s.explain(err)
	}
	return nil
}

// Where names the server, database and user, without credentials.
func (s *Store) Where() string { return s.where }

// unreachable says plainly that the database could not be reached, for a
// failure to connect or a connection lost, and returns nil otherwise.
func unreachable(where string, err error) error {
	if lost(err) {
		return fmt.Errorf("%s is unreachable, so nothing was saved; this replica keeps serving what it holds in memory "+
			"and retries by itself once PostgreSQL is back: %w", where, err)
	}
	return nil
}

// lost reports a failure to connect or a connection that broke.
func lost(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	var pe *pgconn.PgError
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "conn closed") ||
		// Class 08: connection exception; 57P01-03: the server is shutting
		// down or starting.
		errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P"))
}

// explain turns a failure to connect into what to check.
func (s *Store) explain(err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000"):
		return fmt.Errorf("%s refused the login (%s): check the user and the password (datastore.password_file, "+
			"PGPASSWORD or ~/.pgpass) and pg_hba.conf", s.where, pe.Message)
	case errors.As(err, &pe) && pe.Code == "3D000":
		return fmt.Errorf("%s: the database does not exist; create it (createdb) or fix datastore.dsn", s.where)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return fmt.Errorf("%s did not answer: %w", s.where, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(err.Error(), "connect") {
		return fmt.Errorf("cannot reach %s: %w. Is PostgreSQL running there, and does datastore.dsn name the right host and port?", s.where, err)
	}
	return fmt.Errorf("%s: %w", s.where, err)
}

// redactParseError keeps a DSN's password out of a parse error: pgx quotes
// the connection string it could not parse.
func redactParseError(err error) string {
	msg := err.Error()
	if pe, ok := errors.AsType[*pgconn.ParseConfigError](err); ok {
		msg = "cannot parse the connection string"
		if pe.Unwrap() != nil {
			msg += ": " + pe.Unwrap().Error()
		}
	}
	return msg
}
