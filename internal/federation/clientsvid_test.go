package federation

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
)

var local = spiffeid.RequireTrustDomainFromString("alpha.test")

// The fetcher presents the federation client SVID of the local trust
// domain to an endpoint that asks for a client certificate, in both
// profiles, and one it can verify with our bundle; with no SVID to be had
// it fetches anonymously.
func TestFetchPresentsTheClientSVID(t *testing.T) {
	p := newFetchPKI(t)
	alpha := newTreatyCA(t, local)
	cases := []struct {
		name  string
		cert  tls.Certificate
		rel   Relationship
		trust func() *spiffebundle.Bundle
	}{
		{name: "ok/https_web", cert: p.web.localhost(t), rel: webRelationship(), trust: func() *spiffebundle.Bundle { return nil }},
		{name: "ok/https_spiffe", cert: svidCert(t, p.beta, fetchEndpointID), rel: spiffeRelationship(), trust: p.beta.Bundle},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var presented atomic.Pointer[[]*x509.Certificate]
			srv := startClientAuthTLS(t, tc.cert, &presented)
			f := NewFetcher(FetcherConfig{RootCAs: p.web.pool, ClientSVID: NewClientSVID(local, alpha, nil, nil)})
			t.Cleanup(f.Close)
			_, err := f.Fetch(t.Context(), tc.rel, srv.url, tc.trust())
			require.NoError(t, err)
			chain := presented.Load()
			require.NotNil(t, chain)
			id, _, err := x509svid.Verify(*chain, x509bundle.FromX509Authorities(local, alpha.Bundle().X509Authorities()))
			require.NoError(t, err)
			require.Equal(t, profile.FederationClientID(local), id)
		})
	}
	t.Run("ok/anonymous when minting fails", func(t *testing.T) {
		var presented atomic.Pointer[[]*x509.Certificate]
		srv := startClientAuthTLS(t, p.web.localhost(t), &presented)
		f := NewFetcher(FetcherConfig{RootCAs: p.web.pool, ClientSVID: NewClientSVID(local, failingSource{}, nil, nil)})
		t.Cleanup(f.Close)
		_, err := f.Fetch(t.Context(), webRelationship(), srv.url, nil)
		require.NoError(t, err)
		require.Empty(t, *presented.Load())
	})
}

// startClientAuthTLS serves beta's bundle, asking for a client certificate
// and keeping the last one presented.
func startClientAuthTLS(t *testing.T, cert tls.Certificate, presented *atomic.Pointer[[]*x509.Certificate]) *testServer {
	t.Helper()
	p := newTreatyCA(t, partner)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chain := r.TLS.PeerCertificates
		presented.Store(&chain)
		serveJSON(document(p)).ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &testServer{url: mustURL(t, srv.URL+"/")}
}

type failingSource struct{}

func (failingSource) MintX509SVID(spiffeid.ID) (*x509svid.SVID, error) {
	return nil, errors.New("no active authority")
}
