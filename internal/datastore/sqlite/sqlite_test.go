package sqlite

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/datastoretest"
)

// file is a database file the conformance suite opens.
type file string

func (f file) Open(t *testing.T) (datastore.Store, error) { return Open(t.Context(), string(f)) }

func TestConformance(t *testing.T) {
	datastoretest.Run(t, func(t *testing.T) datastoretest.DB {
		return file(filepath.Join(t.TempDir(), "treaty.db"))
	})
}

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "treaty.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestIntegrityCheckPassesOnASoundFile(t *testing.T) {
	s, _ := openStore(t)
	require.NoError(t, s.CheckIntegrity(t.Context()))
}

func TestDatabaseFileIsPrivate(t *testing.T) {
	_, path := openStore(t)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Zero(t, info.Mode().Perm()&0o077, "database file mode %v", info.Mode().Perm())
}

// BenchmarkSetFederatedBundle stores bundles from 8 writers at once, as
// the refresher's workers do during a first sync.
func BenchmarkSetFederatedBundle(b *testing.B) {
	s, err := Open(b.Context(), b.TempDir()+"/treaty.db")
	require.NoError(b, err)
	defer s.Close()
	var next atomic.Int64
	b.SetParallelism(4) // 8 writers on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			td := spiffeid.RequireTrustDomainFromString(fmt.Sprintf("p%d.test", i))
			if err := s.SetFederatedBundle(b.Context(), datastore.Bundle{TrustDomain: td, Document: []byte("doc")}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
