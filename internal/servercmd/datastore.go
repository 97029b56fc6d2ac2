package servercmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/treatyhq/treaty/internal/cli"
	"github.com/treatyhq/treaty/internal/datastore/migrate"
	"github.com/treatyhq/treaty/internal/datastore/postgres"
	"github.com/treatyhq/treaty/internal/server"
)

// location is a datastore named on the command line: sqlite:PATH or
// postgres:DSN.
type location struct {
	engine string
	// file is the SQLite database and lock its data directory's lock.
	file migrate.SQLiteFile
	dsn  string
}

// parseLocation reads sqlite:PATH, where PATH is the database file or the
// data directory holding it, or postgres:DSN (a URL or key=value
// connection string; postgres://… alone is taken too). Errors never quote
// a DSN: it may hold a password.
func parseLocation(name, s string) (location, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return location{engine: migrate.Postgres, dsn: s}, nil
	}
	engine, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok || rest == "":
		return location{}, usagef("-%s: give sqlite:PATH (the database file or the data directory) or postgres:DSN", name)
	case engine == migrate.Postgres:
		return location{engine: migrate.Postgres, dsn: rest}, nil
	case engine != migrate.SQLite:
		return location{}, usagef("-%s: unknown engine %q: use sqlite:PATH or postgres:DSN", name, engine)
	}
	path, err := filepath.Abs(rest)
	if err != nil {
		return location{}, usagef("-%s: %v", name, err)
	}
	dir := filepath.Dir(path)
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		dir, path = path, filepath.Join(path, server.DatabaseFile)
	}
	return location{engine: migrate.SQLite, file: migrate.SQLiteFile{Path: path, Lock: filepath.Join(dir, server.LockFile)}}, nil
}

func usagef(format string, args ...any) error {
	return &cli.UsageError{Msg: fmt.Sprintf(format, args...)}
}

// open opens the datastore, to copy from or into.
func (l location) open(ctx context.Context, source bool, password string) (*migrate.Database, error) {
	switch {
	case l.engine == migrate.Postgres:
		return migrate.OpenPostgres(ctx, postgres.Config{DSN: l.dsn, Password: password})
	case source:
		return l.file.OpenSource(ctx)
	default:
		return l.file.OpenTarget(ctx)
	}
}

// migration is the result of `treaty datastore migrate -output json`.
type migration struct {
	From string `json:"from"`
	To   string `json:"to"`
	migrate.Result
	Rows     int64 `json:"rows"`
	Verified bool  `json:"verified"`
}

func runDatastoreMigrate(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags(stderr, "datastore migrate")
	fromFlag := fs.String("from", "", "the datastore to copy: sqlite:PATH (the database file, or the data directory holding treaty.db) or postgres:DSN")
	toFlag := fs.String("to", "", "the empty datastore to copy into: postgres:DSN (e.g. postgres:postgres://treaty@db:5432/treaty) or sqlite:PATH")
	passwordFile := fs.String("passwordFile", "", "file holding the PostgreSQL password (else the DSN's, PGPASSWORD or ~/.pgpass)")
	fs.StringVar(passwordFile, "password-file", "", "the same as -passwordFile")
	output := fs.String("output", "pretty", "output style: pretty or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *output != "pretty" && *output != "json" {
		return usagef("-output %q: use pretty or json", *output)
	}
	if *fromFlag == "" || *toFlag == "" {
		return usagef("give -from and -to, e.g. -from sqlite:/var/lib/treaty -to postgres:postgres://treaty@db:5432/treaty")
	}
	from, err := parseLocation("from", *fromFlag)
	if err != nil {
		return err
	}
	to, err := parseLocation("to", *toFlag)
	if err != nil {
		return err
	}
	if from.engine == migrate.SQLite && to.engine == migrate.SQLite && from.file.Path == to.file.Path {
		return usagef("-from and -to name the same database, %s", from.file.Path)
	}
	password, err := readPassword(*passwordFile)
	if err != nil {
		return err
	}
	m, err := copyDatastore(ctx, from, to, password)
	if err != nil {
		return err
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	printMigration(stdout, m)
	printNext(stdout, from, to, *passwordFile)
	return nil
}

func readPassword(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-passwordFile: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("-passwordFile %s is empty; write the database password in it", path)
	}
	return pw, nil
}

// copyDatastore opens both datastores, copies and verifies.
func copyDatastore(ctx context.Context, from, to location, password string) (migration, error) {
	src, err := from.open(ctx, true, password)
	if err != nil {
		return migration{}, err
	}
	defer src.Close()
	dst, err := to.open(ctx, false, password)
	if err != nil {
		return migration{}, err
	}
	defer dst.Close()
	res, err := migrate.Copy(ctx, src, dst)
	if err != nil {
		return migration{}, err
	}
	return migration{From: src.String(), To: dst.String(), Result: res, Rows: res.Rows(), Verified: true}, nil
}

func printMigration(w io.Writer, m migration) {
	fmt.Fprintf(w, "Copied %s\n  into %s\n  (schema version %d)\n\n", m.From, m.To, m.SchemaVersion)
	fmt.Fprintf(w, "  %-24s %8s  %s\n", "TABLE", "ROWS", "DIGEST")
	for _, t := range m.Tables {
		digest := t.Digest
		if len(digest) > len("sha256:")+16 {
			digest = digest[:len("sha256:")+16] + "…"
		}
		fmt.Fprintf(w, "  %-24s %8d  %s\n", t.Table, t.Rows, digest)
	}
	fmt.Fprintf(w, "  %-24s %8d\n", "total", m.Rows)
	fmt.Fprintf(w, "\nverified: the target holds the same %d rows as the source, table by table (row count and digest, read back from both)\n", m.Rows)
}

// printNext says how to run the server on the copy.
func printNext(w io.Writer, from, to location, passwordFile string) {
	fmt.Fprintln(w, "\nNext:")
	if to.engine == migrate.Postgres {
		file := passwordFile
		if file == "" {
			file = "FILE  # holding the password (or set PGPASSWORD)"
		}
		fmt.Fprintf(w, "  1. In the server's configuration, point the datastore at PostgreSQL:\n"+
			"       datastore:\n         driver: postgres\n         dsn: %q\n         password_file: %s\n", redactDSN(to.dsn), file)
		if hasPassword(to.dsn) {
			fmt.Fprintln(w, "     (the DSN you gave holds a password: keep it in password_file instead)")
		}
	} else {
		fmt.Fprintf(w, "  1. In the server's configuration, set data_dir to %s and datastore.driver to sqlite (the default)\n",
			filepath.Dir(to.file.Path))
	}
	keys := "the data_dir"
	if from.engine == migrate.SQLite {
		keys = filepath.Dir(from.file.Path)
	}
	fmt.Fprintf(w, "  2. Keep %s: it still holds the CA's private keys (%s/), which the copy does not move\n", keys, server.KeysDir)
	fmt.Fprintln(w, "  3. Start the server (treaty server run -config FILE); the source was not changed: keep it as a backup")
}

// keyValuePassword finds the password of a key=value connection string.
var keyValuePassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactDSN returns dsn without its password, for output.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		if strings.Contains(dsn, "://") {
			return "(a connection string that cannot be shown)"
		}
		return keyValuePassword.ReplaceAllString(dsn, "${1}xxxxx")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// hasPassword reports whether dsn holds a password.
func hasPassword(dsn string) bool { return redactDSN(dsn) != dsn }
