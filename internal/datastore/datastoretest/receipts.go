package datastoretest

import (
	"math"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Receipts keep each partner's latest fetch: a later one replaces it, an
// earlier one (a replica flushing late) does not, and all 64 bits of the
// sequence survive. Only partners whose bundle is stored are listed.
func (x suite) testReceipts(t *testing.T) {
	s, _ := x.openStore(t)
	ctx := t.Context()
	list, err := s.ListReceipts(ctx)
	require.NoError(t, err)
	require.Empty(t, list)
	require.NoError(t, s.PutReceipts(ctx, nil), "nothing to record is no error")

	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	beta, gamma := spiffeid.RequireTrustDomainFromString("beta.test"), spiffeid.RequireTrustDomainFromString("gamma.test")
	delta := spiffeid.RequireTrustDomainFromString("delta.test")
	for _, td := range []spiffeid.TrustDomain{beta, gamma} {
		require.NoError(t, s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: td, Document: []byte(`{"keys":[]}`), Sequence: 1, UpdatedAt: t0}))
	}
	require.NoError(t, s.PutReceipts(ctx, []datastore.Receipt{
		{TrustDomain: gamma, Sequence: math.MaxUint64, FetchedAt: t0},
		{TrustDomain: beta, Sequence: 41, FetchedAt: t0},
		{TrustDomain: delta, Sequence: 3, FetchedAt: t0}, // no bundle stored: not listed
	}))
	require.NoError(t, s.PutReceipts(ctx, []datastore.Receipt{{TrustDomain: beta, Sequence: 42, FetchedAt: t0.Add(time.Minute)}}))
	require.NoError(t, s.PutReceipts(ctx, []datastore.Receipt{{TrustDomain: beta, Sequence: 40, FetchedAt: t0.Add(-time.Minute)}}),
		"an earlier fetch is no error")

	list, err = s.ListReceipts(ctx)
	require.NoError(t, err)
	require.Equal(t, []datastore.Receipt{
		{TrustDomain: beta, Sequence: 42, FetchedAt: t0.Add(time.Minute)},
		{TrustDomain: gamma, Sequence: math.MaxUint64, FetchedAt: t0},
	}, list)

	require.NoError(t, s.DeleteFederatedBundle(ctx, gamma))
	list, err = s.ListReceipts(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "a partner whose bundle is deleted is no partner")
}
