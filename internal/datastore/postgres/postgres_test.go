package postgres

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/datastoretest"
	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
	"github.com/treatyhq/treaty/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// database is one database of the test cluster.
type database struct {
	dsn, password string
}

func (d database) Open(t *testing.T) (datastore.Store, error) {
	// A busy machine can take seconds to fork a backend and check a
	// password: wait longer than a server would.
	return Open(t.Context(), Config{DSN: d.dsn, Password: d.password, ConnectTimeout: time.Minute})
}

func TestConformance(t *testing.T) {
	datastoretest.Run(t, func(t *testing.T) datastoretest.DB {
		c, dsn := pgtest.NewDatabase(t)
		return database{dsn: dsn, password: c.Password}
	})
}

// Replicas that start together against a new database apply each
// migration once: the others wait on the schema lock, then find nothing
// to do.
func TestReplicasStartingTogetherMigrateOnce(t *testing.T) {
	c, dsn := pgtest.NewDatabase(t)
	const replicas = 4
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			s, err := Open(t.Context(), Config{DSN: dsn, Password: c.Password})
			if err == nil {
				_ = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	s, err := Open(t.Context(), Config{DSN: dsn, Password: c.Password})
	require.NoError(t, err)
	defer s.Close()
	want, err := sqlstore.Migrations(Migrations())
	require.NoError(t, err)
	var rows, newest int
	require.NoError(t, s.DB().QueryRowContext(t.Context(), `SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&rows, &newest))
	require.Equal(t, want, rows, "each migration recorded once")
	require.Equal(t, want, newest)
}

// What an operator meets when the database cannot be used: what is wrong
// and where, and never the password.
func TestOpenExplainsWhyItCannotConnect(t *testing.T) {
	c, dsn := pgtest.NewDatabase(t)
	unused := freeLoopbackPort(t)
	for name, tc := range map[string]struct {
		cfg  Config
		want []string
	}{
		"wrong password": {Config{DSN: dsn, Password: "not-the-password"},
			[]string{"refused the login", "datastore.password_file", `user "treaty"`}},
		"password in the DSN, wrong": {Config{DSN: strings.Replace(dsn, "treaty@", "treaty:not-the-password@", 1)},
			[]string{"refused the login"}},
		"no such database": {Config{DSN: c.DSN("nosuchdb"), Password: c.Password},
			[]string{"database does not exist", "createdb"}},
		"nothing listening": {Config{DSN: fmt.Sprintf("postgres://treaty@127.0.0.1:%d/x?sslmode=disable", unused), Password: "s3cret-pw", ConnectTimeout: 2 * time.Second},
			[]string{"cannot reach PostgreSQL at 127.0.0.1:", "Is PostgreSQL running"}},
		"not a DSN": {Config{DSN: "postgres://treaty:s3cret-pw@127.0.0.1:notaport/x"},
			[]string{"datastore.dsn: cannot parse"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(t.Context(), tc.cfg)
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			require.NotContains(t, err.Error(), "not-the-password")
			require.NotContains(t, err.Error(), "s3cret-pw")
			require.NotContains(t, err.Error(), c.Password)
		})
	}
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port //nolint:forcetypeassert // a TCP listener's address
	require.NoError(t, l.Close())
	return port
}
