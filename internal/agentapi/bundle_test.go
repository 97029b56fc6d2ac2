package agentapi

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
)

func TestGetBundleWithoutClientCertificate(t *testing.T) {
	e := startAPI(t)
	got, err := bundlev1.NewBundleClient(e.dial(t, nil)).GetBundle(t.Context(), &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	want := e.ca.Bundle()
	require.Equal(t, apiTD.Name(), got.GetTrustDomain())
	require.Len(t, got.GetX509Authorities(), len(want.X509Authorities()))
	for i, cert := range want.X509Authorities() {
		require.Equal(t, cert.Raw, got.GetX509Authorities()[i].GetAsn1())
	}
	require.Len(t, got.GetJwtAuthorities(), len(want.JWTAuthorities()))
	for _, k := range got.GetJwtAuthorities() {
		require.NotEmpty(t, k.GetKeyId(), "the agent drops a bundle with a JWT authority without key ID")
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		require.NoError(t, err)
		wantKey, ok := want.FindJWTAuthority(k.GetKeyId())
		require.True(t, ok)
		require.True(t, wantKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub))
	}
	hint, _ := want.RefreshHint()
	require.Equal(t, int64(hint/time.Second), got.GetRefreshHint())
	seq, _ := want.SequenceNumber()
	require.Equal(t, seq, got.GetSequenceNumber())
}

func TestGetFederatedBundle(t *testing.T) {
	e := startAPI(t)
	partnerTD := spiffeid.RequireTrustDomainFromString("partner.test")
	partner, _ := catest.New(t, partnerTD)
	doc, err := bundle.Marshal(partner.Bundle())
	require.NoError(t, err)
	require.NoError(t, e.store.CreateFederatedBundle(t.Context(), datastore.Bundle{TrustDomain: partnerTD, Document: doc, Sequence: 7}))
	svid := e.attestJoinToken(t, "tok")
	agentClient := bundlev1.NewBundleClient(e.dial(t, svid))

	for _, tc := range []struct {
		name    string
		td      string
		code    codes.Code
		message string
	}{
		{"ok/partner", "partner.test", codes.OK, ""},
		{"fail/own trust domain", apiTD.Name(), codes.InvalidArgument, "getting a federated bundle for the server's own trust domain is not allowed"},
		{"fail/missing", "stranger.test", codes.NotFound, "bundle not found"},
		{"fail/invalid trust domain", "Not A Trust Domain", codes.InvalidArgument, "malformed trust domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agentClient.GetFederatedBundle(t.Context(), &bundlev1.GetFederatedBundleRequest{TrustDomain: tc.td})
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			if tc.code != codes.OK {
				require.Contains(t, status.Convert(err).Message(), tc.message)
				return
			}
			require.Equal(t, "partner.test", got.GetTrustDomain())
			require.Equal(t, uint64(7), got.GetSequenceNumber())
			require.Equal(t, partner.Bundle().X509Authorities()[0].Raw, got.GetX509Authorities()[0].GetAsn1())
		})
	}

	t.Run("fail/no client certificate", func(t *testing.T) {
		_, err := bundlev1.NewBundleClient(e.dial(t, nil)).GetFederatedBundle(t.Context(), &bundlev1.GetFederatedBundleRequest{TrustDomain: "partner.test"})
		requireDenied(t, err, types.PermissionDeniedDetails_UNKNOWN)
	})
}

func TestGetFederatedBundleFollowsTheStore(t *testing.T) {
	e := startAPI(t)
	partnerTD := spiffeid.RequireTrustDomainFromString("partner.test")
	first, _ := catest.New(t, partnerTD)
	second, _ := catest.New(t, partnerTD)
	store := func(b *ca.CA, seq uint64, create bool) {
		doc, err := bundle.Marshal(b.Bundle())
		require.NoError(t, err)
		rec := datastore.Bundle{TrustDomain: partnerTD, Document: doc, Sequence: seq}
		if create {
			require.NoError(t, e.store.CreateFederatedBundle(t.Context(), rec))
			return
		}
		require.NoError(t, e.store.UpdateFederatedBundle(t.Context(), rec))
	}
	agentClient := bundlev1.NewBundleClient(e.dial(t, e.attestJoinToken(t, "tok")))
	get := func() (*types.Bundle, error) {
		return agentClient.GetFederatedBundle(t.Context(), &bundlev1.GetFederatedBundleRequest{TrustDomain: partnerTD.Name()})
	}

	store(first, 1, true)
	for range 2 { // the second answer is the cached one
		got, err := get()
		require.NoError(t, err)
		require.Equal(t, uint64(1), got.GetSequenceNumber())
		require.Equal(t, first.Bundle().X509Authorities()[0].Raw, got.GetX509Authorities()[0].GetAsn1())
	}
	store(second, 2, false)
	got, err := get()
	require.NoError(t, err)
	require.Equal(t, uint64(2), got.GetSequenceNumber())
	require.Equal(t, second.Bundle().X509Authorities()[0].Raw, got.GetX509Authorities()[0].GetAsn1())

	require.NoError(t, e.store.DeleteFederatedBundle(t.Context(), partnerTD))
	_, err = get()
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
}

func TestAnswerCache(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("partner.test")
	rec := datastore.Bundle{TrustDomain: td, Document: []byte(`{"keys":[]}`), Sequence: 3}
	answer := &types.Bundle{TrustDomain: td.Name(), SequenceNumber: 3}
	var c answerCache
	for _, tc := range []struct {
		name string
		rec  datastore.Bundle
		hit  bool
	}{
		{"ok/same record", rec, true},
		{"miss/other sequence", datastore.Bundle{TrustDomain: td, Document: rec.Document, Sequence: 4}, false},
		{"miss/other document", datastore.Bundle{TrustDomain: td, Document: []byte(`{"keys":[{}]}`), Sequence: 3}, false},
		{"miss/other trust domain", datastore.Bundle{TrustDomain: spiffeid.RequireTrustDomainFromString("other.test"), Document: rec.Document, Sequence: 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.put(rec, answer)
			got, ok := c.get(tc.rec)
			require.Equal(t, tc.hit, ok)
			if tc.hit {
				require.Same(t, answer, got)
			}
		})
	}
	t.Run("miss/forgotten", func(t *testing.T) {
		c.put(rec, answer)
		c.forget(td)
		_, ok := c.get(rec)
		require.False(t, ok)
	})
}
