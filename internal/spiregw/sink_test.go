package spiregw_test

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/spiregw"
)

// never is the change feed of a refresher that never changes.
func never() <-chan struct{} { return nil }

// partner is a real treaty CA of another trust domain, whose bundle treaty
// holds as a partner's.
func partner(t *testing.T, name string) *ca.CA {
	t.Helper()
	c, _ := catest.New(t, spiffeid.RequireTrustDomainFromString(name))
	return c
}

// relate stores a relationship with td and, if doc is set, the bundle
// fetched for it, as the admin API and the refresher do.
func relate(t *testing.T, store *sqlite.Store, td spiffeid.TrustDomain, doc []byte, seq uint64) {
	t.Helper()
	var b *datastore.Bundle
	if doc != nil {
		b = &datastore.Bundle{TrustDomain: td, Document: doc, Sequence: seq}
	}
	_, err := store.CreateRelationship(t.Context(), datastore.Relationship{TrustDomain: td,
		EndpointURLs: []string{"https://127.0.0.1:1"}, Profile: "https_web"}, b)
	require.NoError(t, err)
}

// relatePartner relates store with c's trust domain, holding c's bundle.
func relatePartner(t *testing.T, store *sqlite.Store, c *ca.CA) {
	t.Helper()
	doc, seq := c.Document()
	relate(t, store, c.TrustDomain(), doc, seq)
}

// federated returns the bundle SPIRE holds for td, or the gRPC code of the
// failure to read it (codes.NotFound when it holds none).
func (s *spireServer) federated(t *testing.T, td spiffeid.TrustDomain) (*spiffebundle.Bundle, codes.Code) {
	t.Helper()
	resp, err := s.bundles.GetFederatedBundle(t.Context(), &bundlev1.GetFederatedBundleRequest{TrustDomain: td.Name()})
	if err != nil {
		return nil, status.Code(err)
	}
	b, err := bundlewire.FromProto(resp)
	require.NoError(t, err)
	return b, codes.OK
}

// requireInSPIRE checks that SPIRE holds c's current bundle.
func requireInSPIRE(t *testing.T, s *spireServer, c *ca.CA) {
	t.Helper()
	got, code := s.federated(t, c.TrustDomain())
	require.Equal(t, codes.OK, code, "SPIRE holds no bundle of %s", c.TrustDomain().Name())
	require.True(t, sameAuthorities(c.Bundle(), got), "SPIRE holds another bundle of %s", c.TrustDomain().Name())
	_, want := c.Document()
	seq, _ := got.SequenceNumber()
	require.Equal(t, want, seq)
}

func requireNotInSPIRE(t *testing.T, s *spireServer, td spiffeid.TrustDomain) {
	t.Helper()
	_, code := s.federated(t, td)
	require.Equal(t, codes.NotFound, code, "SPIRE holds a bundle of %s", td.Name())
}

// TestSink writes partner bundles into one real SPIRE server, each case
// with trust domains of its own.
func TestSink(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	g := newGateway(t, s, openStore(t), nil)

	t.Run("ok/writes partner bundles and their changes", func(t *testing.T) {
		store := openStore(t)
		beta, gamma := partner(t, "beta.test"), partner(t, "gamma.test")
		relatePartner(t, store, beta)
		relate(t, store, gamma.TrustDomain(), nil, 0)
		sink := spiregw.NewSink(g, store, never, nil)

		require.NoError(t, sink.Reconcile(t.Context()))
		requireInSPIRE(t, s, beta)
		requireNotInSPIRE(t, s, gamma.TrustDomain()) // not fetched yet

		_, err := beta.Prepare(t.Context(), datastore.KindX509)
		require.NoError(t, err)
		doc, seq := beta.Document()
		require.NoError(t, store.SetFederatedBundle(t.Context(), datastore.Bundle{TrustDomain: beta.TrustDomain(), Document: doc, Sequence: seq}))
		doc, seq = gamma.Document()
		require.NoError(t, store.SetFederatedBundle(t.Context(), datastore.Bundle{TrustDomain: gamma.TrustDomain(), Document: doc, Sequence: seq}))
		require.NoError(t, sink.Reconcile(t.Context()))
		requireInSPIRE(t, s, beta)
		require.Len(t, beta.Bundle().X509Authorities(), 2, "the rotated bundle")
		requireInSPIRE(t, s, gamma)

		require.NoError(t, store.DeleteRelationship(t.Context(), beta.TrustDomain()))
		require.NoError(t, sink.Reconcile(t.Context()))
		requireNotInSPIRE(t, s, beta.TrustDomain())
		requireInSPIRE(t, s, gamma)
	})

	t.Run("ok/never writes a trust domain SPIRE federates with itself", func(t *testing.T) {
		store := openStore(t)
		theirs, ours, other := partner(t, "delta.test"), partner(t, "delta.test"), partner(t, "epsilon.test")
		resp, err := s.tds.BatchCreateFederationRelationship(t.Context(), &trustdomainv1.BatchCreateFederationRelationshipRequest{
			FederationRelationships: []*types.FederationRelationship{{
				TrustDomain:       "delta.test",
				BundleEndpointUrl: "https://127.0.0.1:1",
				BundleEndpointProfile: &types.FederationRelationship_HttpsSpiffe{
					HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: "spiffe://delta.test/spire/server"},
				},
				TrustDomainBundle: bundlewire.ToProto(theirs.Bundle(), nil, nil, nil),
			}},
		})
		require.NoError(t, err)
		require.Equal(t, int32(codes.OK), resp.GetResults()[0].GetStatus().GetCode(), resp.GetResults()[0].GetStatus().GetMessage())
		relatePartner(t, store, ours)
		relatePartner(t, store, other)
		logs := &syncBuffer{}
		sink := spiregw.NewSink(g, store, never, slog.New(slog.NewTextHandler(logs, nil)))

		require.NoError(t, sink.Reconcile(t.Context()))
		requireInSPIRE(t, s, theirs)
		requireInSPIRE(t, s, other)
		require.Contains(t, logs.String(), "the SPIRE server federates with this trust domain itself")
		require.Contains(t, logs.String(), "trust_domain=delta.test")

		// Dropping treaty's relationship does not delete SPIRE's bundle.
		require.NoError(t, store.DeleteRelationship(t.Context(), ours.TrustDomain()))
		require.NoError(t, sink.Reconcile(t.Context()))
		requireInSPIRE(t, s, theirs)
	})

	t.Run("ok/keeps a bundle SPIRE's entries federate with", func(t *testing.T) {
		store := openStore(t)
		zeta := partner(t, "zeta.test")
		relatePartner(t, store, zeta)
		logs := &syncBuffer{}
		sink := spiregw.NewSink(g, store, never, slog.New(slog.NewTextHandler(logs, nil)))
		require.NoError(t, sink.Reconcile(t.Context()))
		requireInSPIRE(t, s, zeta)

		resp, err := s.entries.BatchCreateEntry(t.Context(), &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
			ParentId:      &types.SPIFFEID{TrustDomain: "spire.test", Path: "/node"},
			SpiffeId:      &types.SPIFFEID{TrustDomain: "spire.test", Path: "/workload"},
			Selectors:     []*types.Selector{{Type: "unix", Value: "uid:1000"}},
			FederatesWith: []string{"zeta.test"},
		}}})
		require.NoError(t, err)
		require.Equal(t, int32(codes.OK), resp.GetResults()[0].GetStatus().GetCode(), resp.GetResults()[0].GetStatus().GetMessage())

		require.NoError(t, store.DeleteRelationship(t.Context(), zeta.TrustDomain()))
		require.NoError(t, sink.Reconcile(t.Context()), "SPIRE's refusal to delete is not an error to retry")
		requireInSPIRE(t, s, zeta)
		require.Contains(t, logs.String(), "the SPIRE server keeps the bundle of a partner treaty no longer federates with")
		require.Contains(t, logs.String(), "trust_domain=zeta.test")
	})

	t.Run("fail/bundles SPIRE refuses or that cannot be read are tried again", func(t *testing.T) {
		store := openStore(t)
		own, eta := partner(t, "spire.test"), partner(t, "eta.test")
		relatePartner(t, store, own) // SPIRE's own trust domain: it refuses
		relate(t, store, spiffeid.RequireTrustDomainFromString("theta.test"), []byte(`{"keys":`), 2)
		relatePartner(t, store, eta)
		sink := spiregw.NewSink(g, store, never, nil)

		for range 2 {
			err := sink.Reconcile(t.Context())
			require.ErrorContains(t, err, "the SPIRE server refused the bundle of spire.test")
			require.ErrorContains(t, err, "bundle of theta.test")
			requireInSPIRE(t, s, eta)
		}
		theirs, _ := s.bundle(t)
		require.False(t, sameAuthorities(theirs, own.Bundle()), "SPIRE's own bundle is untouched")
	})
}

// TestSinkStoreUnreadable checks that a datastore that cannot be read is
// an error, never taken for "no relationships": the bundles written stay
// in SPIRE.
func TestSinkStoreUnreadable(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	g := newGateway(t, s, openStore(t), nil)
	store := openStore(t)
	beta := partner(t, "beta.test")
	relatePartner(t, store, beta)
	sink := spiregw.NewSink(g, store, never, nil)
	require.NoError(t, sink.Reconcile(t.Context()))
	requireInSPIRE(t, s, beta)

	require.NoError(t, store.Close())
	require.Error(t, sink.Reconcile(t.Context()))
	requireInSPIRE(t, s, beta)
}

// TestSinkRetriesWhileSPIREIsAway runs a sink while SPIRE is stopped: it
// keeps trying, and writes the partner's bundle at the first change after
// SPIRE is back.
func TestSinkRetriesWhileSPIREIsAway(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	g := newGateway(t, s, openStore(t), nil)
	store := openStore(t)
	beta := partner(t, "beta.test")
	relatePartner(t, store, beta)
	feed := &changeFeed{ch: make(chan struct{})}
	logs := &syncBuffer{}
	sink := spiregw.NewSink(g, store, feed.changed, slog.New(slog.NewTextHandler(logs, nil)))

	s.stop()
	require.ErrorContains(t, sink.Reconcile(t.Context()), "list the SPIRE server's federation relationships")
	run(t, sink)
	eventually(t, func() bool { return strings.Contains(logs.String(), "will retry") }, "Run reports the failure")

	s.start()
	eventually(t, func() bool {
		feed.notify() // the refresher announces a change
		_, code := s.federated(t, beta.TrustDomain())
		return code == codes.OK
	}, "the sink writes the bundle once SPIRE is back")
	requireInSPIRE(t, s, beta)
}

// changeFeed is a refresher's Changed: a channel closed at each change.
type changeFeed struct {
	mu sync.Mutex
	ch chan struct{}
}

func (f *changeFeed) changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch
}

func (f *changeFeed) notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.ch)
	f.ch = make(chan struct{})
}
