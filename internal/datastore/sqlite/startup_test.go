package sqlite

import (
	"bytes"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// filledDatabase makes a real database with a few rows and returns its
// path, closed.
func filledDatabase(t *testing.T) string {
	t.Helper()
	s, path := openStore(t)
	for i := range 50 {
		td := "p" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".test"
		_, err := s.CreateRelationship(t.Context(), datastore.Relationship{TrustDomain: spiffeid.RequireTrustDomainFromString(td), EndpointURLs: []string{"https://" + td + "/bundle"},
			Profile: "https_web", CreatedAt: time.Now(), UpdatedAt: time.Now()}, nil)
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	return path
}

// TestOpenRefusesDamagedDatabase: garbage in the database file stops Open
// at once with the file's name and the fix, and the file is not changed.
func TestOpenRefusesDamagedDatabase(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, path string)
		msg   string
	}{
		{name: "fail/text instead of a database", spoil: overwrite([]byte("this is not a database, it is a note\n")), msg: `is not a SQLite database (it begins with "this is not a da")`},
		{name: "fail/random bytes", spoil: overwrite(bytes.Repeat([]byte{0xab, 0x00, 0x17}, 4096)), msg: "is not a SQLite database"},
		{name: "fail/cut inside the header", spoil: overwrite([]byte("SQLite for")), msg: "is not a SQLite database"},
		{name: "fail/garbage over the pages", spoil: func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			for i := 4096; i < len(data); i += 3 {
				data[i] ^= 0x5a
			}
			require.NoError(t, os.WriteFile(path, data, 0o600))
		}, msg: "is damaged ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filledDatabase(t)
			tc.spoil(t, path)
			before, err := os.ReadFile(path)
			require.NoError(t, err)

			start := time.Now()
			_, err = Open(t.Context(), path)
			require.ErrorContains(t, err, "database "+path+" "+tc.msg)
			require.ErrorContains(t, err, "treaty has not changed it")
			require.ErrorContains(t, err, "from a backup")
			require.Less(t, time.Since(start), LockWait, "a damaged file is refused at once")

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(before, after), "the file was changed")
		})
	}
}

func overwrite(data []byte) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		require.NoError(t, os.WriteFile(path, data, 0o600))
	}
}

// TestOpenRefusesLockedDatabase: a lock held by another connection stops
// Open within LockWait, saying what to do; once it is released, Open works.
func TestOpenRefusesLockedDatabase(t *testing.T) {
	for _, tc := range []struct {
		name string
		lock []string
	}{
		{name: "fail/write lock (BEGIN EXCLUSIVE)", lock: []string{"BEGIN EXCLUSIVE"}},
		{name: "fail/exclusive locking mode", lock: []string{"PRAGMA locking_mode = EXCLUSIVE", "BEGIN EXCLUSIVE", "SELECT count(*) FROM relationships"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filledDatabase(t)
			other, err := sql.Open("sqlite", "file:"+path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = other.Close() })
			conn, err := other.Conn(t.Context())
			require.NoError(t, err)
			for _, stmt := range tc.lock {
				_, err := conn.ExecContext(t.Context(), stmt)
				require.NoError(t, err, stmt)
			}
			before, err := os.ReadFile(path)
			require.NoError(t, err)

			start := time.Now()
			_, err = Open(t.Context(), path)
			require.ErrorContains(t, err, "database "+path+" is locked by another process (waited 2s); treaty has not changed it")
			require.ErrorContains(t, err, "fuser "+path)
			require.Less(t, time.Since(start), LockWait+3*time.Second, "start-up gives up after LockWait")
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(before, after), "the file was changed")

			_, err = conn.ExecContext(t.Context(), "ROLLBACK")
			require.NoError(t, err)
			require.NoError(t, conn.Close())
			require.NoError(t, other.Close())
			s, err := Open(t.Context(), path)
			require.NoError(t, err, "released, the database opens")
			require.NoError(t, s.Close())
		})
	}
}
