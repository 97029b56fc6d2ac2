package servercmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/migrate"
	"github.com/treatyhq/treaty/internal/datastore/postgres"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// dataDir returns a data directory as a stopped server leaves it: a
// database with a bundle and an entry, and the lock file.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s, err := sqlite.Open(t.Context(), filepath.Join(dir, "treaty.db"))
	require.NoError(t, err)
	defer s.Close()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	require.NoError(t, s.CommitAuthorities(t.Context(), datastore.AuthorityChange{
		LocalBundle: &datastore.Bundle{TrustDomain: td, Document: []byte(`{"keys":[]}`), Sequence: 3, UpdatedAt: time.Now()},
	}))
	_, err = s.CreateEntry(t.Context(), datastore.Entry{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/web"),
		ParentID: spiffeid.RequireFromString("spiffe://example.org/agent"), Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "treaty.lock"), nil, 0o600))
	return dir
}

func TestDatastoreMigrate(t *testing.T) {
	c, dsn := pgtest.NewDatabase(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte(c.Password+"\n"), 0o600))
	dir := dataDir(t)

	stdout, stderr, code := run(t.Context(), "datastore", "migrate", "-from", "sqlite:"+dir, "-to", "postgres:"+dsn, "-passwordFile", pwFile)
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{
		"Copied sqlite:" + filepath.Join(dir, "treaty.db"), `database "test_`,
		"bundles", "entries", "verified: the target holds the same 3 rows as the source",
		"driver: postgres", `dsn: "` + dsn + `"`, "password_file: " + pwFile,
		"Keep " + dir + ": it still holds the CA's private keys (keys/)",
	} {
		require.Contains(t, stdout, want)
	}
	require.NotContains(t, stdout+stderr, c.Password)

	s, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Password: c.Password})
	require.NoError(t, err)
	defer s.Close()
	b, err := s.LocalBundle(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(3), b.Sequence)

	t.Run("fail/target not empty", func(t *testing.T) {
		_, stderr, code := run(t.Context(), "datastore", "migrate", "-from", "sqlite:"+dir, "-to", "postgres:"+dsn, "-passwordFile", pwFile)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "already holds 2 records (bundles: 1, entries: 1)")
		require.Contains(t, stderr, "migrate into an empty database")
	})
	t.Run("ok/json, back into sqlite", func(t *testing.T) {
		back := filepath.Join(t.TempDir(), "copy.db")
		stdout, stderr, code := run(t.Context(), "datastore", "migrate", "-from", dsn, "-to", "sqlite:"+back,
			"-password-file", pwFile, "-output", "json")
		require.Equal(t, 0, code, stderr)
		var m struct {
			From, To      string
			SchemaVersion int `json:"schema_version"`
			Tables        []struct {
				Table, Digest string
				Rows          int
			}
			Rows     int
			Verified bool
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &m), stdout)
		require.True(t, m.Verified)
		require.Equal(t, 3, m.Rows)
		require.Equal(t, "sqlite:"+back, m.To)
		require.Positive(t, m.SchemaVersion)
		require.NotEmpty(t, m.Tables)
	})
}

func TestDatastoreMigrateRefuses(t *testing.T) {
	dir := dataDir(t)
	lock, err := os.OpenFile(filepath.Join(dir, "treaty.lock"), os.O_RDWR, 0)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"fail/no -to", []string{"-from", "sqlite:" + dir}, 2, "give -from and -to"},
		{"fail/unknown engine", []string{"-from", "mysql:x", "-to", "sqlite:y"}, 2, `-from: unknown engine "mysql"`},
		{"fail/no path", []string{"-from", "sqlite:", "-to", "sqlite:y"}, 2, "give sqlite:PATH"},
		{"fail/same database", []string{"-from", "sqlite:" + dir, "-to", "sqlite:" + filepath.Join(dir, "treaty.db")}, 2, "name the same database"},
		{"fail/output", []string{"-from", "sqlite:" + dir, "-to", "sqlite:y", "-output", "xml"}, 2, `-output "xml"`},
		{"fail/server running", []string{"-from", "sqlite:" + dir, "-to", "sqlite:" + filepath.Join(t.TempDir(), "x.db")}, 1,
			"stop the treaty server using " + dir + " first; the copy is offline"},
		{"fail/no database", []string{"-from", "sqlite:" + t.TempDir(), "-to", "sqlite:" + filepath.Join(t.TempDir(), "x.db")}, 1, "no treaty database at"},
		{"fail/empty password file", []string{"-from", "sqlite:" + dir, "-to", "postgres://treaty:s3cret@127.0.0.1:1/x", "-passwordFile", os.DevNull}, 1,
			"is empty; write the database password in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t.Context(), append([]string{"datastore", "migrate"}, tc.args...)...)
			require.Equal(t, tc.code, code, stderr)
			require.Contains(t, stderr, tc.stderr)
			require.NotContains(t, stderr, "s3cret")
		})
	}
}

func TestParseLocation(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, arg string
		want      location
	}{
		{"ok/data directory", "sqlite:" + dir, location{engine: "sqlite",
			file: migrate.SQLiteFile{Path: filepath.Join(dir, "treaty.db"), Lock: filepath.Join(dir, "treaty.lock")}}},
		{"ok/database file", "sqlite:" + filepath.Join(dir, "old.db"), location{engine: "sqlite",
			file: migrate.SQLiteFile{Path: filepath.Join(dir, "old.db"), Lock: filepath.Join(dir, "treaty.lock")}}},
		{"ok/postgres URL", "postgres:postgres://treaty@db/treaty", location{engine: "postgres", dsn: "postgres://treaty@db/treaty"}},
		{"ok/postgres key value", "postgres:host=db user=treaty", location{engine: "postgres", dsn: "host=db user=treaty"}},
		{"ok/URL alone", "postgresql://treaty@db/treaty", location{engine: "postgres", dsn: "postgresql://treaty@db/treaty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLocation("from", tc.arg)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ name, dsn, want string }{
		{"ok/url without password", "postgres://treaty@db:5432/treaty?sslmode=disable", "postgres://treaty@db:5432/treaty?sslmode=disable"},
		{"ok/url with password", "postgres://treaty:s3cret@db/treaty", "postgres://treaty:xxxxx@db/treaty"},
		{"ok/password parameter", "postgresql://db/treaty?password=s3cret&sslmode=require", "postgresql://db/treaty?password=xxxxx&sslmode=require"},
		{"ok/key value", "host=db user=treaty password=s3cret dbname=treaty", "host=db user=treaty password=xxxxx dbname=treaty"},
		{"ok/key value quoted", "host=db password = 'a b\\' s3cret' dbname=treaty", "host=db password = xxxxx dbname=treaty"},
		{"ok/unparseable url", "postgres://treaty:s3cret@db:port/x%zz", "(a connection string that cannot be shown)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redactDSN(tc.dsn)
			require.Equal(t, tc.want, got)
			require.False(t, strings.Contains(got, "s3cret"))
		})
	}
}
