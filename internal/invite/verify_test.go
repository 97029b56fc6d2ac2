package invite

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/federation"
)

var (
	alpha      = spiffeid.RequireTrustDomainFromString("alpha.test")
	endpointID = spiffeid.RequireFromString("spiffe://alpha.test/spire/server")
)

// inviter is the PKI of the trust domain that made the invite, and of an
// impostor: a CA of the same trust domain name that the inviter never
// used.
type inviter struct {
	ca, impostor *ca.CA
}

func newInviter(t *testing.T) *inviter {
	t.Helper()
	c, _ := catest.New(t, alpha, catest.Lifetimes(time.Hour, time.Minute))
	impostor, _ := catest.New(t, alpha, catest.Lifetimes(time.Hour, time.Minute))
	return &inviter{ca: c, impostor: impostor}
}

func fingerprint(t *testing.T, b *spiffebundle.Bundle) string {
	t.Helper()
	fp, err := bundle.Fingerprint(b)
	require.NoError(t, err)
	return fp
}

func document(t *testing.T, c *ca.CA) []byte {
	t.Helper()
	doc, _ := c.Document()
	return doc
}

// svid is an X509-SVID for id signed by c.
func svid(t *testing.T, c *ca.CA, id spiffeid.ID) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	chain, err := c.SignX509SVID(ca.X509SVIDParams{ID: id, PublicKey: key.Public()})
	require.NoError(t, err)
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

// endpoint is a TLS server on loopback that presents cert and serves
// doc, counting the requests it answers.
type endpoint struct {
	url      string
	requests atomic.Int32
	// webRoots trust cert when it is httptest's own.
	webRoots *x509.CertPool
}

func serve(t *testing.T, cert *tls.Certificate, status int, doc []byte) *endpoint {
	t.Helper()
	e := &endpoint{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(doc)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some cases
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.webRoots = x509.NewCertPool()
	e.webRoots.AddCert(srv.Certificate())
	return e
}

// spiffeToken is an https_spiffe invite to url, pinned to fp.
func spiffeToken(url, fp string) Token {
	return Token{TrustDomain: "alpha.test", URLs: []string{url}, Profile: "https_spiffe",
		EndpointSPIFFEID: endpointID.String(), Fingerprint: fp, Nonce: "n1"}
}

func webToken(url, fp string) Token {
	return Token{TrustDomain: "alpha.test", URLs: []string{url}, Profile: "https_web", Fingerprint: fp, Nonce: "n1"}
}

// TestVerify joins invites against real TLS endpoints with the fetcher
// federation uses. The fingerprint is what makes reading an https_spiffe
// endpoint's bundle without authenticating it safe: every case where the
// endpoint, the bundle or the invite is not the inviter's must fail.
func TestVerify(t *testing.T) {
	p := newInviter(t)
	good := fingerprint(t, p.ca.Bundle())
	svidOf := func(c *ca.CA) *tls.Certificate { cert := svid(t, c, endpointID); return &cert }
	cases := []struct {
		name  string
		token func(t *testing.T) (Token, *endpoint)
		// err is the error Verify must wrap, or nil with phrase alone;
		// no err and no phrase means success.
		err    error
		phrase string
		// fetches is how many requests the endpoint must have answered.
		fetches int32
	}{
		{
			name: "ok/https_spiffe pinned on first use",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.ca), http.StatusOK, document(t, p.ca))
				return spiffeToken(e.url, good), e
			},
			fetches: 2, // read unauthenticated, then fetched over the SVID it pinned
		},
		{
			name: "ok/https_spiffe with the bundle embedded",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.ca), http.StatusOK, document(t, p.ca))
				tok := spiffeToken(e.url, good)
				tok.Bundle = document(t, p.ca)
				return tok, e
			},
			fetches: 1,
		},
		{
			name: "ok/https_web",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, nil, http.StatusOK, document(t, p.ca))
				return webToken(e.url, good), e
			},
			fetches: 1,
		},
		{
			name: "fail/https_spiffe wrong fingerprint",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.ca), http.StatusOK, document(t, p.ca))
				return spiffeToken(e.url, strings.Repeat("0", 64)), e
			},
			err: ErrFingerprint, phrase: "expected 000000000000…", fetches: 1,
		},
		{
			name: "fail/https_web wrong fingerprint",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, nil, http.StatusOK, document(t, p.ca))
				return webToken(e.url, strings.Repeat("0", 64)), e
			},
			err: ErrFingerprint, phrase: "Ask alpha.test for a new invite", fetches: 1,
		},
		{
			name: "fail/https_spiffe endpoint serves another bundle",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.impostor), http.StatusOK, document(t, p.impostor))
				return spiffeToken(e.url, good), e
			},
			err: ErrFingerprint, fetches: 1,
		},
		{
			// The inviter's bundle is public: an impostor can serve it.
			// It must then fail to prove it holds the inviter's keys.
			name: "fail/https_spiffe impostor serves the inviter's bundle with its own SVID",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.impostor), http.StatusOK, document(t, p.ca))
				return spiffeToken(e.url, good), e
			},
			phrase: `does not chain to the bundle we hold for "alpha.test"`, fetches: 1,
		},
		{
			name: "fail/https_spiffe embedded bundle swapped",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.impostor), http.StatusOK, document(t, p.impostor))
				tok := spiffeToken(e.url, good)
				tok.Bundle = document(t, p.impostor)
				return tok, e
			},
			err: ErrFingerprint, phrase: "expected " + good[:12] + "…", fetches: 0,
		},
		{
			name: "fail/https_spiffe embedded bundle is the inviter's but the endpoint is not",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.impostor), http.StatusOK, document(t, p.ca))
				tok := spiffeToken(e.url, good)
				tok.Bundle = document(t, p.ca)
				return tok, e
			},
			phrase: `does not chain to the bundle we hold for "alpha.test"`, fetches: 0,
		},
		{
			name: "fail/https_spiffe authenticated endpoint serves another bundle",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.ca), http.StatusOK, document(t, p.impostor))
				tok := spiffeToken(e.url, good)
				tok.Bundle = document(t, p.ca)
				return tok, e
			},
			err: ErrFingerprint, fetches: 1,
		},
		{
			name: "fail/https_web endpoint serves another bundle",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, nil, http.StatusOK, document(t, p.impostor))
				return webToken(e.url, good), e
			},
			err: ErrFingerprint, fetches: 1,
		},
		{
			name: "fail/https_spiffe embedded bundle is not a bundle",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.ca), http.StatusOK, document(t, p.ca))
				tok := spiffeToken(e.url, good)
				tok.Bundle = []byte(`{"keys":[]}`)
				return tok, e
			},
			phrase: "the bundle in the invite", fetches: 0,
		},
		{
			name: "fail/https_spiffe endpoint serves no bundle",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.ca), http.StatusOK, []byte(`<html>login</html>`))
				return spiffeToken(e.url, good), e
			},
			phrase: "serves no valid bundle of alpha.test", fetches: 1,
		},
		{
			name: "fail/https_spiffe endpoint answers 404",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, svidOf(p.ca), http.StatusNotFound, nil)
				return spiffeToken(e.url, good), e
			},
			phrase: "status 404 Not Found", fetches: 1,
		},
		{
			name: "fail/short fingerprint",
			token: func(t *testing.T) (Token, *endpoint) {
				e := serve(t, nil, http.StatusOK, document(t, p.ca))
				return webToken(e.url, "abc"), e
			},
			err: ErrFingerprint, phrase: "expected abc…", fetches: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, e := tc.token(t)
			f := federation.NewFetcher(federation.FetcherConfig{RootCAs: e.webRoots})
			t.Cleanup(f.Close)
			v, err := Verify(t.Context(), tok, f)
			require.Equal(t, tc.fetches, e.requests.Load(), "requests the endpoint answered")
			if tc.err == nil && tc.phrase == "" {
				require.NoError(t, err)
				require.True(t, v.Bundle.Equal(p.ca.Bundle()), "the inviter's bundle")
				require.Equal(t, alpha, v.Relationship.TrustDomain)
				require.Equal(t, e.url, v.Relationship.BundleEndpointURLs[0].String())
				return
			}
			require.Error(t, err)
			require.Nil(t, v, "nothing to store when the invite is refused")
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			}
			require.ErrorContains(t, err, tc.phrase)
		})
	}
}

// TestVerifyRefusesBadInvite: an invite that names no valid relationship
// is refused before any network I/O.
func TestVerifyRefusesBadInvite(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name   string
		token  Token
		phrase string
	}{
		{name: "fail/bad trust domain", token: Token{TrustDomain: "Alpha Test", URLs: []string{"https://a.example"}, Profile: "https_web", Fingerprint: fp},
			phrase: `invite: trust domain "Alpha Test"`},
		{name: "fail/unknown profile", token: Token{TrustDomain: "alpha.test", URLs: []string{"https://a.example"}, Profile: "http", Fingerprint: fp},
			phrase: "invite: "},
		{name: "fail/bad endpoint SPIFFE ID", token: Token{TrustDomain: "alpha.test", URLs: []string{"https://a.example"}, Profile: "https_spiffe", EndpointSPIFFEID: "spiffe://", Fingerprint: fp},
			phrase: "invite: endpoint SPIFFE ID"},
		{name: "fail/https_spiffe without endpoint SPIFFE ID", token: Token{TrustDomain: "alpha.test", URLs: []string{"https://a.example"}, Profile: "https_spiffe", Fingerprint: fp},
			phrase: "SPIFFE ID"},
		{name: "fail/URL with a control character", token: Token{TrustDomain: "alpha.test", URLs: []string{"https://a.example/\x7f"}, Profile: "https_web", Fingerprint: fp},
			phrase: "is not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(t.Context(), tc.token, refuseFetch{t})
			require.ErrorContains(t, err, tc.phrase)
		})
	}
}

// TestVerifyPinnedReadEndsWithTheCaller: an endpoint that accepts the
// unauthenticated read and never answers holds it only until the caller
// gives up.
func TestVerifyPinnedReadEndsWithTheCaller(t *testing.T) {
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		cancel() // the caller gives up while the endpoint stays silent
		<-t.Context().Done()
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	_, err = Verify(ctx, spiffeToken("https://"+l.Addr().String(), strings.Repeat("ab", 32)), refuseFetch{t})
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "read alpha.test's bundle from https://127.0.0.1:")
}
