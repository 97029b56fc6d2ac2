package datastoretest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Writes that arrive together (sharing a transaction, on engines that group
// them) each keep their own outcome: the one that fails is rolled back
// alone, and every caller that heard "stored" finds its bundle after a
// reopen.
func (x suite) testGroupedWritesKeepTheirOwnOutcome(t *testing.T) {
	s, path := x.openStore(t)
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
			errs[i] = s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: td, Document: fmt.Appendf(nil, "doc %d", i), Sequence: uint64(i)}) //nolint:gosec // i is 0..63
		})
	}
	wg.Wait()
	require.NoError(t, s.Close())

	s2, err := path.Open(t)
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

func (x suite) testGroupedWriteRefusesACancelledCaller(t *testing.T) {
	s, _ := x.openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: partnerTD, Document: []byte("x")})
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.FederatedBundle(t.Context(), partnerTD)
	require.ErrorIs(t, err, datastore.ErrNotFound)
}
