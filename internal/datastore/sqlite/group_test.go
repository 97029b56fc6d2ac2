package sqlite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Writes that arrive together share a transaction, but each keeps its own
// outcome: the one that fails is rolled back alone, and every caller that
// heard "stored" finds its bundle after a reopen.
func TestGroupedWritesKeepTheirOwnOutcome(t *testing.T) {
	s, path := openStore(t)
	ctx := t.Context()
	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
		TrustDomain: localTD, Document: []byte("local"), Sequence: 1,
	}}))
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			td := spiffeid.RequireTrustDomainFromString(fmt.Sprintf("p%d.test", i))
			if i == n/2 {
				td = localTD // refused: the local bundle changes only through CommitAuthorities
			}
			errs[i] = s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: td, Document: fmt.Appendf(nil, "doc %d", i), Sequence: uint64(i)})
		})
	}
	wg.Wait()
	require.NoError(t, s.Close())

	s2, err := Open(ctx, path)
	require.NoError(t, err)
	defer s2.Close()
	for i := range n {
		if i == n/2 {
			require.ErrorContains(t, errs[i], "it is the local trust domain")
			continue
		}
		require.NoError(t, errs[i])
		b, err := s2.FederatedBundle(ctx, spiffeid.RequireTrustDomainFromString(fmt.Sprintf("p%d.test", i)))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("doc %d", i), string(b.Document))
	}
	local, err := s2.LocalBundle(ctx)
	require.NoError(t, err)
	require.Equal(t, "local", string(local.Document), "the refused write changed nothing")
}

func TestGroupedWriteRefusesACancelledCaller(t *testing.T) {
	s, _ := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: partnerTD, Document: []byte("x")})
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.FederatedBundle(t.Context(), partnerTD)
	require.ErrorIs(t, err, datastore.ErrNotFound)
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
