package agentapi

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
)

func TestExpandFederatesWith(t *testing.T) {
	federated := []string{"a.test", "b.test"}
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"ok/none", nil, nil},
		{"ok/explicit kept", []string{"z.test"}, []string{"z.test"}},
		{"ok/wildcard expanded", []string{datastore.FederateWithAll}, []string{"a.test", "b.test"}},
		{"ok/wildcard merged with explicit", []string{"b.test", datastore.FederateWithAll, "c.test"}, []string{"a.test", "b.test", "c.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := expandFederatesWith([]datastore.Entry{{FederatesWith: tt.in, RevisionNumber: 7}}, federated)
			require.Equal(t, tt.want, got[0].FederatesWith)
			if !slices.Contains(tt.in, datastore.FederateWithAll) {
				require.Equal(t, int64(7), got[0].RevisionNumber, "the stored revision")
			}
		})
	}
}

func TestRevisionFor(t *testing.T) {
	base := revisionFor(1, []string{"a.test"})
	require.Positive(t, base)
	require.Equal(t, base, revisionFor(1, []string{"a.test"}), "the same after a restart")
	require.NotEqual(t, base, revisionFor(2, []string{"a.test"}), "an update of the entry")
	require.NotEqual(t, base, revisionFor(1, []string{"a.test", "b.test"}), "a new partner")
	require.NotEqual(t, base, revisionFor(1, nil), "a partner gone")
	require.Positive(t, revisionFor(math.MaxInt64, []string{"z.test"}), "never negative")
}

func TestFederatedTrustDomainsLeavesOutOurOwn(t *testing.T) {
	bundles := []datastore.Bundle{
		{TrustDomain: spiffeid.RequireTrustDomainFromString("b.test")},
		{TrustDomain: apiTD},
		{TrustDomain: spiffeid.RequireTrustDomainFromString("a.test")},
	}
	require.Equal(t, []string{"a.test", "b.test"}, federatedTrustDomains(bundles, apiTD))
}

// TestEntriesChangedRebuildsIndex: an entry created after Serve started,
// and a bundle stored for a partner, reach the index once the server is
// told, with "*" naming the partner.
func TestEntriesChangedRebuildsIndex(t *testing.T) {
	e := startAPI(t)
	agentID := spiffeid.RequireFromSegments(apiTD, "spire", "agent", "join_token", "t")
	require.Empty(t, e.srv.index.Authorized(agentID, nil))

	partner := spiffeid.RequireTrustDomainFromString("partner.test")
	require.NoError(t, e.store.CreateFederatedBundle(t.Context(), datastore.Bundle{TrustDomain: partner, Document: []byte(`{"keys":[]}`), Sequence: 1}))
	_, err := e.store.CreateEntry(t.Context(), datastore.Entry{
		SPIFFEID: spiffeid.RequireFromSegments(apiTD, "workload"), ParentID: agentID,
		Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1000"}}, FederatesWith: []string{datastore.FederateWithAll},
	})
	require.NoError(t, err)
	e.srv.EntriesChanged(t.Context())

	require.Eventually(t, func() bool { return len(e.srv.index.Authorized(agentID, nil)) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"partner.test"}, e.srv.index.Authorized(agentID, nil)[0].FederatesWith)
}

// TestBundlesChangedRebuildsIndex: a federated bundle stored by federation
// (BundlesChanged) reaches entries federating with "*".
func TestBundlesChangedRebuildsIndex(t *testing.T) {
	c, store := catest.New(t, apiTD)
	var mu sync.Mutex
	bundles := make(chan struct{})
	bundlesChanged := func() <-chan struct{} { // as the refresher's Changed: a new channel after each change
		mu.Lock()
		defer mu.Unlock()
		return bundles
	}
	srv, err := New(Config{Address: "127.0.0.1:0", TrustDomain: apiTD, SVIDSource: c, Bundle: c, Signer: c, Store: store, Entries: store, SVIDSigner: c,
		BundlesChanged: bundlesChanged})
	require.NoError(t, err)
	agentID := spiffeid.RequireFromSegments(apiTD, "spire", "agent", "join_token", "t")
	_, err = store.CreateEntry(t.Context(), datastore.Entry{
		SPIFFEID: spiffeid.RequireFromSegments(apiTD, "workload"), ParentID: agentID,
		Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1000"}}, FederatesWith: []string{datastore.FederateWithAll},
	})
	require.NoError(t, err)
	l, err := srv.Listen(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool { return len(srv.index.Authorized(agentID, nil)) == 1 }, 5*time.Second, 10*time.Millisecond, "filled at start")
	require.Empty(t, srv.index.Authorized(agentID, nil)[0].FederatesWith, "no bundle held yet")

	partner := spiffeid.RequireTrustDomainFromString("partner.test")
	require.NoError(t, store.CreateFederatedBundle(t.Context(), datastore.Bundle{TrustDomain: partner, Document: []byte(`{"keys":[]}`), Sequence: 1}))
	mu.Lock()
	close(bundles)
	bundles = make(chan struct{})
	mu.Unlock()
	require.Eventually(t, func() bool {
		return slices.Equal([]string{"partner.test"}, srv.index.Authorized(agentID, nil)[0].FederatesWith)
	}, 5*time.Second, 10*time.Millisecond)
}
