package federation

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundleendpoint"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/profile"
)

var (
	fetchEndpointID = spiffeid.RequireFromString("spiffe://beta.test/spire/server")
	fetchGamma      = spiffeid.RequireTrustDomainFromString("gamma.test")
)

// fetchPKI holds the authorities of the fault matrix.
type fetchPKI struct {
	web     *webCA // our https_web roots trust it
	strange *webCA // our roots do not
	beta    *ca.CA // the partner's CA: its bundle is the one we hold
	rotated *ca.CA // a new authority of beta.test, not in the bundle we hold
	gamma   *ca.CA // another trust domain
}

func newFetchPKI(t *testing.T) *fetchPKI {
	t.Helper()
	return &fetchPKI{
		web:     newWebCA(t, "Test Web CA"),
		strange: newWebCA(t, "Strange CA"),
		beta:    newTreatyCA(t, partner),
		rotated: newTreatyCA(t, partner),
		gamma:   newTreatyCA(t, fetchGamma),
	}
}

// newTreatyCA is a real CA for td: authorities that live an hour, a
// refresh hint of a minute.
func newTreatyCA(t *testing.T, td spiffeid.TrustDomain) *ca.CA {
	c, _ := catest.New(t, td, catest.Lifetimes(time.Hour, time.Minute))
	return c
}

func document(c *ca.CA) []byte {
	doc, _ := c.Document()
	return doc
}

// svidCert is an X509-SVID for id signed by c's active authority.
func svidCert(t *testing.T, c *ca.CA, id spiffeid.ID) tls.Certificate {
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

// webCA is a test web PKI authority.
type webCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newWebCA(t *testing.T, name string) *webCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &webCA{cert: cert, key: key, pool: pool}
}

// leaf issues a server certificate for names (IP addresses, DNS names or
// SPIFFE IDs)
// valid until notAfter.
func (w *webCA) leaf(t *testing.T, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: notAfter.Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if u, err := url.Parse(n); err == nil && u.Scheme == "spiffe" {
			tmpl.URIs = append(tmpl.URIs, u)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, w.cert, key.Public(), w.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (w *webCA) localhost(t *testing.T) tls.Certificate {
	t.Helper()
	return w.leaf(t, time.Now().Add(time.Hour), "127.0.0.1", "localhost")
}

// testServer is a TLS server on 127.0.0.1 that counts the connections it
// accepts.
type testServer struct {
	url   *url.URL
	conns atomic.Int32
}

func startTLS(t *testing.T, cert tls.Certificate, h http.Handler) *testServer {
	t.Helper()
	s := &testServer{}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of most cases
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.url = mustURL(t, srv.URL+"/")
	return s
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

func serveBody(contentType string, status int, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
}

func serveJSON(body []byte) http.HandlerFunc {
	return serveBody("application/json", http.StatusOK, body)
}

// stopOnCleanup returns a channel closed when the test ends, before its
// servers are closed, to release handlers that stall on purpose.
func stopOnCleanup(t *testing.T) chan struct{} {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	return stop
}

func webRelationship() Relationship {
	return Relationship{TrustDomain: partner, Profile: profile.HTTPSWeb}
}

func spiffeRelationship() Relationship {
	return Relationship{TrustDomain: partner, Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: fetchEndpointID}
}

// fetchTarget is what a case fetches, and what it checks afterwards.
type fetchTarget struct {
	rel   Relationship
	url   *url.URL
	trust *spiffebundle.Bundle
	after func(t *testing.T)
}

func webTarget(t *testing.T, cert tls.Certificate, h http.Handler) fetchTarget {
	t.Helper()
	return fetchTarget{rel: webRelationship(), url: startTLS(t, cert, h).url}
}

func spiffeTarget(t *testing.T, cert tls.Certificate, trust *spiffebundle.Bundle) fetchTarget {
	t.Helper()
	return fetchTarget{rel: spiffeRelationship(), url: startTLS(t, cert, serveJSON([]byte(`{"keys":[]}`))).url, trust: trust}
}

// serveEndpoint runs treaty's own https_spiffe bundle endpoint for c.
func serveEndpoint(t *testing.T, c *ca.CA) *url.URL {
	t.Helper()
	s, err := bundleendpoint.New(bundleendpoint.Config{Address: "127.0.0.1:0", Profile: profile.HTTPSSPIFFE,
		EndpointSPIFFEID: fetchEndpointID, SVIDSource: c, Source: c})
	require.NoError(t, err)
	l, err := s.Listen(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return mustURL(t, "https://"+l.Addr().String()+"/")
}

func listenLoopback(t *testing.T) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
}

// closedPort returns a loopback URL where nothing listens.
func closedPort(t *testing.T) *url.URL {
	t.Helper()
	l, err := listenLoopback(t)
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return mustURL(t, "https://"+addr+"/")
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) *url.URL {
	t.Helper()
	l, err := listenLoopback(t)
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return mustURL(t, "https://"+l.Addr().String()+"/")
}

// withExtraKeys returns doc with keys appended to its "keys".
func withExtraKeys(t *testing.T, doc []byte, keys ...string) []byte {
	t.Helper()
	var members map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(doc, &members))
	var all []json.RawMessage
	require.NoError(t, json.Unmarshal(members["keys"], &all))
	for _, k := range keys {
		all = append(all, json.RawMessage(k))
	}
	raw, err := json.Marshal(all)
	require.NoError(t, err)
	members["keys"] = raw
	out, err := json.Marshal(members)
	require.NoError(t, err)
	return out
}

type fetchCase struct {
	name   string
	cfg    FetcherConfig
	target func(t *testing.T, p *fetchPKI) fetchTarget
	// reason is the expected failure; empty means success.
	reason Reason
	// phrases must appear in the error, or in the warnings on success.
	phrases []string
	check   func(t *testing.T, p *fetchPKI, res *bundle.Result)
}

func fetchCases() []fetchCase {
	return []fetchCase{
		{
			name: "ok/https_web",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), serveJSON(document(p.beta)))
			},
			check: func(t *testing.T, p *fetchPKI, res *bundle.Result) {
				require.True(t, res.Bundle.Equal(p.beta.Bundle()))
				require.Empty(t, res.Warnings)
			},
		},
		{
			name: "ok/https_spiffe",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return fetchTarget{rel: spiffeRelationship(), url: serveEndpoint(t, p.beta), trust: p.beta.Bundle()}
			},
			check: func(t *testing.T, p *fetchPKI, res *bundle.Result) {
				require.True(t, res.Bundle.Equal(p.beta.Bundle()))
			},
		},
		{
			name: "ok/empty keys",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), serveJSON([]byte(`{"keys":[],"spiffe_sequence":9}`)))
			},
			check: func(t *testing.T, _ *fetchPKI, res *bundle.Result) {
				require.True(t, res.Bundle.Empty(), "an empty key set is a valid revoke-all")
				seq, ok := res.Bundle.SequenceNumber()
				require.True(t, ok)
				require.Equal(t, uint64(9), seq)
			},
		},
		{
			name: "ok/unknown kty and use skipped",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				doc := withExtraKeys(t, document(p.beta), `{"kty":"oct","use":"x509-svid","k":"c2VjcmV0"}`, `{"kty":"EC","use":"enc","crv":"P-256"}`)
				return webTarget(t, p.web.localhost(t), serveJSON(doc))
			},
			phrases: []string{`a symmetric key ("k") is a shared secret`, `unknown use "enc"`},
			check: func(t *testing.T, p *fetchPKI, res *bundle.Result) {
				require.Equal(t, p.beta.Bundle().X509Authorities(), res.Bundle.X509Authorities())
			},
		},
		{
			name: "fail/connection refused",
			target: func(t *testing.T, _ *fetchPKI) fetchTarget {
				return fetchTarget{rel: webRelationship(), url: closedPort(t)}
			},
			reason:  ReasonConnectionRefused,
			phrases: []string{"nothing listens on 127.0.0.1:", "bundle endpoint is running"},
		},
		{
			// The server never answers, so the handshake limit ends the
			// fetch however busy the machine is. A stalled body has no
			// such case here: on a busy machine the handshake alone can
			// use up a short request limit; TestFetchTimeLimits measures
			// every limit, the body's included, on a fake clock.
			name: "fail/handshake hangs",
			cfg:  FetcherConfig{TLSHandshakeTimeout: 200 * time.Millisecond},
			target: func(t *testing.T, _ *fetchPKI) fetchTarget {
				return fetchTarget{rel: webRelationship(), url: silentListener(t)}
			},
			reason:  ReasonTimeout,
			phrases: []string{"in the TLS handshake", "limit 200ms", "check that the port serves TLS"},
		},
		{
			name: "fail/5xx",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), serveBody("text/plain", http.StatusServiceUnavailable, []byte("upstream connect error")))
			},
			reason:  ReasonHTTPStatus,
			phrases: []string{"503 Service Unavailable", "check its bundle endpoint"},
		},
		{
			name: "fail/404 HTML",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				page := []byte("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1><hr>nginx</body></html>")
				return webTarget(t, p.web.localhost(t), serveBody("text/html", http.StatusNotFound, page))
			},
			reason:  ReasonHTTPStatus,
			phrases: []string{`answered 404 Not Found with an HTML page titled "404 Not Found"`, "check the URL path"},
		},
		{
			name: "fail/200 HTML login page",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				page := []byte("<html>\n<head><TITLE>Sign in -\n Corp SSO</TITLE></head><form>...</form></html>")
				return webTarget(t, p.web.localhost(t), serveBody("text/html; charset=utf-8", http.StatusOK, page))
			},
			reason:  ReasonHTMLPage,
			phrases: []string{`titled "Sign in - Corp SSO"`, "login page", "captive portal"},
		},
		{
			name: "fail/redirect to http",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, "http://127.0.0.1:1/bundle", http.StatusFound)
				}))
			},
			reason:  ReasonRedirect,
			phrases: []string{`"http://127.0.0.1:1/bundle"`, "plain-HTTP", "only to https URLs"},
		},
		{
			name: "fail/redirect to a URL with a password",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/moved" {
						t.Error("followed a redirect to a URL with userinfo")
					}
					http.Redirect(w, r, "https://u:secret@"+r.Host+"/moved", http.StatusFound)
				}))
			},
			reason:  ReasonRedirect,
			phrases: []string{"u:xxxxx@", "must not hold", "5.2.1.3"},
		},
		{
			name: "ok/redirect to https is followed",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				bundleJSON := serveJSON(document(p.beta))
				return webTarget(t, p.web.localhost(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/moved" {
						bundleJSON.ServeHTTP(w, r)
						return
					}
					http.Redirect(w, r, "/moved", http.StatusTemporaryRedirect)
				}))
			},
			check: func(t *testing.T, p *fetchPKI, res *bundle.Result) {
				require.True(t, res.Bundle.Equal(p.beta.Bundle()))
			},
		},
		{
			name: "fail/redirect loop",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, "/again", http.StatusFound)
				}))
			},
			reason:  ReasonRedirect,
			phrases: []string{"/again", "at most 3 redirects"},
		},
		{
			name: "fail/100 MiB body",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				var written atomic.Int64
				target := webTarget(t, p.web.localhost(t), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					chunk := bytes.Repeat([]byte(" "), 64<<10)
					for range 1600 { // 100 MiB, streamed without a length
						n, err := w.Write(chunk)
						written.Add(int64(n))
						if err != nil {
							return
						}
					}
				}))
				target.after = func(t *testing.T) {
					require.Less(t, written.Load(), int64(50<<20), "the fetcher stops reading at the cap")
				}
				return target
			},
			reason:  ReasonBodyTooLarge,
			phrases: []string{"larger than the 1048576-byte limit", "a few kilobytes"},
		},
		{
			name: "fail/declared length over the cap",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Length", "104857600")
					_, _ = w.Write([]byte(`{"keys":[]}`))
				}))
			},
			reason:  ReasonBodyTooLarge,
			phrases: []string{"declares 104857600 bytes"},
		},
		{
			// SPIFFE Trust Domain and Bundle §4.1.3: every entry ignored
			// makes the bundle effectively empty; treaty keeps the last
			// good one instead of revoking the partner by accident.
			name: "fail/effectively empty",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), serveJSON([]byte(`{"keys":[{"use":"x509-svid","kty":"EC"},{"use":"jwt-svid","kty":"EC","crv":"P-256"}]}`)))
			},
			reason: ReasonEffectivelyEmpty,
			phrases: []string{"every one of the 2 entries of the bundle is ignored", "keeping the last good bundle",
				`keys[0] (x509-svid) ignored: no certificate in "x5c"`, `keys[1] (jwt-svid) ignored: no "kid"`, `publishes "keys": []`},
		},
		{
			name: "fail/invalid JSON",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), serveJSON([]byte(`{"keys": [`)))
			},
			reason:  ReasonInvalidBundle,
			phrases: []string{"not a JSON object", "the partner must fix what its endpoint serves"},
		},
		{
			// SPIFFE Federation §5.1: the bundle belongs to the trust domain
			// the relationship names, whatever its certificates say.
			name: "ok/bundle naming another trust domain is kept as ours",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.localhost(t), serveJSON(document(p.gamma)))
			},
			phrases: []string{`names trust domain "gamma.test"`, `kept as an authority of "beta.test"`, "right partner's bundle"},
			check: func(t *testing.T, p *fetchPKI, res *bundle.Result) {
				require.Equal(t, partner, res.Bundle.TrustDomain())
				require.Equal(t, p.gamma.Bundle().X509Authorities(), res.Bundle.X509Authorities())
			},
		},
		{
			name: "fail/wrong endpoint SPIFFE ID",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return spiffeTarget(t, svidCert(t, p.beta, spiffeid.RequireFromString("spiffe://beta.test/other")), p.beta.Bundle())
			},
			reason:  ReasonWrongSPIFFEID,
			phrases: []string{"presents SPIFFE ID spiffe://beta.test/other", "expects spiffe://beta.test/spire/server", "-endpointSpiffeID spiffe://beta.test/other"},
		},
		{
			name: "fail/no URI SAN",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return spiffeTarget(t, p.web.localhost(t), p.beta.Bundle())
			},
			reason:  ReasonWebCertOnSPIFFE,
			phrases: []string{"without a SPIFFE ID (no URI SAN", "looks like an https_web endpoint", "-bundleEndpointProfile https_web", "TLS passthrough"},
		},
		{
			name: "fail/SVID on https_web",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, svidCert(t, p.beta, fetchEndpointID), serveJSON(document(p.beta)))
			},
			reason:  ReasonSVIDOnWeb,
			phrases: []string{"this endpoint presents an X509-SVID for spiffe://beta.test/spire/server", "use bundleEndpointProfile https_spiffe with endpointSpiffeID spiffe://beta.test/spire/server", "bootstrapped with the partner's bundle"},
		},
		{
			// The SVID's CA is among our web roots, so only the missing
			// DNS/IP SAN fails: still an https_spiffe endpoint, not a
			// name mismatch to fix with another URL.
			name: "fail/SVID without the host's name from a trusted CA on https_web",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.leaf(t, time.Now().Add(time.Hour), "spiffe://beta.test/spire/server"), serveJSON(document(p.beta)))
			},
			reason:  ReasonSVIDOnWeb,
			phrases: []string{"this endpoint presents an X509-SVID for spiffe://beta.test/spire/server", "use bundleEndpointProfile https_spiffe with endpointSpiffeID spiffe://beta.test/spire/server"},
		},
		{
			name: "fail/expired server certificate",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.leaf(t, time.Now().Add(-time.Hour), "127.0.0.1"), serveJSON(document(p.beta)))
			},
			reason:  ReasonExpiredCertificate,
			phrases: []string{"expired at", "must renew it"},
		},
		{
			name: "fail/partner CA rotated past our bootstrap bundle",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return spiffeTarget(t, svidCert(t, p.rotated, fetchEndpointID), p.beta.Bundle())
			},
			reason:  ReasonUnknownAuthority,
			phrases: []string{`does not chain to the bundle we hold for "beta.test"`, "rotated its CA", "treaty bundle set -id spiffe://beta.test"},
		},
		{
			name: "fail/no bootstrap bundle",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				srv := startTLS(t, svidCert(t, p.beta, fetchEndpointID), serveJSON(document(p.beta)))
				return fetchTarget{rel: spiffeRelationship(), url: srv.url, after: func(t *testing.T) {
					require.Zero(t, srv.conns.Load(), "no network I/O without a bundle to verify with")
				}}
			},
			reason:  ReasonNoBootstrapBundle,
			phrases: []string{"https_spiffe needs the partner's bundle once", "treaty bundle set -id spiffe://beta.test -path <file> -format spiffe"},
		},
		{
			name: "fail/name mismatch",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.web.leaf(t, time.Now().Add(time.Hour), "bundle.beta.test", "10.0.0.7"), serveJSON(document(p.beta)))
			},
			reason:  ReasonNameMismatch,
			phrases: []string{`valid for bundle.beta.test, 10.0.0.7, not for "127.0.0.1"`, "use a URL whose host is one of those names"},
		},
		{
			name: "fail/unknown web authority",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				return webTarget(t, p.strange.localhost(t), serveJSON(document(p.beta)))
			},
			reason:  ReasonUnknownWebAuthority,
			phrases: []string{`issued by "CN=Strange CA"`, "federation.ca_file"},
		},
		{
			name: "fail/plain HTTP port",
			target: func(t *testing.T, p *fetchPKI) fetchTarget {
				srv := httptest.NewServer(serveJSON(document(p.beta)))
				t.Cleanup(srv.Close)
				return fetchTarget{rel: webRelationship(), url: mustURL(t, strings.Replace(srv.URL, "http:", "https:", 1))}
			},
			reason:  ReasonTLSHandshake,
			phrases: []string{"does not speak TLS"},
		},
	}
}

// caseDeadline bounds each case of the fault matrix. It is far above the
// fetcher's own limits: a case that reaches it failed to stop by itself,
// which the case then reports. How long the limits take is measured on a
// fake clock by TestFetchTimeLimits.
const caseDeadline = time.Minute

// TestFetch runs the fault matrix against real TLS servers on loopback,
// and fails if a goroutine it started outlives it.
func TestFetch(t *testing.T) {
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, running) }) // runs last, after every server and fetcher is closed
	p := newFetchPKI(t)
	for _, tc := range fetchCases() {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target(t, p)
			cfg := tc.cfg
			cfg.RootCAs = p.web.pool
			f := NewFetcher(cfg)
			t.Cleanup(f.Close)
			ctx, cancel := context.WithTimeout(t.Context(), caseDeadline)
			defer cancel()
			res, err := f.Fetch(ctx, target.rel, target.url, target.trust)
			require.NoError(t, ctx.Err(), "the fetch ran until the case's deadline instead of stopping at its own limits")
			if tc.reason == "" {
				requireFetched(t, tc, p, res, err)
			} else {
				requireFetchError(t, tc, res, err)
			}
			if target.after != nil {
				target.after(t)
			}
		})
	}
}

func requireFetched(t *testing.T, tc fetchCase, p *fetchPKI, res *bundle.Result, err error) {
	t.Helper()
	require.NoError(t, err)
	warnings := strings.Join(res.Warnings, "\n")
	for _, phrase := range tc.phrases {
		require.Contains(t, warnings, phrase)
	}
	if tc.check != nil {
		tc.check(t, p, res)
	}
}

func requireFetchError(t *testing.T, tc fetchCase, res *bundle.Result, err error) {
	t.Helper()
	require.Nil(t, res)
	t.Log(err) // the message an operator reads
	fe, ok := errors.AsType[*FetchError](err)
	require.True(t, ok, "want a *FetchError, got %T: %v", err, err)
	require.Equal(t, tc.reason, fe.Reason, "error: %v", err)
	require.Equal(t, "beta.test", fe.TrustDomain)
	require.True(t, strings.HasPrefix(err.Error(), `fetch bundle of "beta.test" from https://`), err.Error())
	for _, phrase := range tc.phrases {
		require.Contains(t, err.Error(), phrase)
	}
	if tc.reason == ReasonInvalidBundle {
		_, ok := errors.AsType[*bundle.Error](err)
		require.True(t, ok, "an invalid bundle wraps the *bundle.Error")
	}
}

// TestFetchReusesConnections: successive polls of one relationship use one
// connection, even when the trust bundle is passed anew each time.
func TestFetchReusesConnections(t *testing.T) {
	p := newFetchPKI(t)
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
			srv := startTLS(t, tc.cert, serveJSON(document(p.beta)))
			f := NewFetcher(FetcherConfig{RootCAs: p.web.pool})
			t.Cleanup(f.Close)
			for range 3 {
				_, err := f.Fetch(t.Context(), tc.rel, srv.url, tc.trust())
				require.NoError(t, err)
			}
			require.EqualValues(t, 1, srv.conns.Load())
		})
	}
}

// TestFetchVerifiesWithEachCallsTrust: a connection verified with one
// bundle is not reused by a fetch that passes another.
func TestFetchVerifiesWithEachCallsTrust(t *testing.T) {
	p := newFetchPKI(t)
	srv := startTLS(t, svidCert(t, p.beta, fetchEndpointID), serveJSON(document(p.beta)))
	f := NewFetcher(FetcherConfig{})
	t.Cleanup(f.Close)
	rel := spiffeRelationship()

	_, err := f.Fetch(t.Context(), rel, srv.url, p.beta.Bundle())
	require.NoError(t, err)
	_, err = f.Fetch(t.Context(), rel, srv.url, p.rotated.Bundle())
	fe, ok := errors.AsType[*FetchError](err)
	require.True(t, ok, "the idle connection must not be reused: %v", err)
	require.Equal(t, ReasonUnknownAuthority, fe.Reason)
	_, err = f.Fetch(t.Context(), rel, srv.url, p.beta.Bundle())
	require.NoError(t, err)
	require.EqualValues(t, 3, srv.conns.Load())
}

func TestFetchErrorMessage(t *testing.T) {
	cause := errors.New("boom")
	cases := []struct {
		name string
		err  *FetchError
		want string
	}{
		{name: "ok/with fix", err: &FetchError{TrustDomain: "beta.test", URL: "https://b/", Reason: ReasonTimeout, Detail: "timed out", Fix: "check it", Err: cause},
			want: `fetch bundle of "beta.test" from https://b/: timed out; check it`},
		{name: "ok/without fix", err: &FetchError{TrustDomain: "beta.test", URL: "https://b/", Reason: ReasonCanceled, Detail: "the fetch was cancelled"},
			want: `fetch bundle of "beta.test" from https://b/: the fetch was cancelled`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.err.Error())
			require.Equal(t, string(tc.err.Reason), tc.err.FailureReason())
			require.Equal(t, tc.err.Err != nil, errors.Is(tc.err, cause))
		})
	}
}

func TestFetchRefusesBadInput(t *testing.T) {
	p := newFetchPKI(t)
	f := NewFetcher(FetcherConfig{})
	t.Cleanup(f.Close)
	cases := []struct {
		name   string
		rel    Relationship
		url    string
		trust  *spiffebundle.Bundle
		phrase string
	}{
		{name: "fail/plain http URL", rel: webRelationship(), url: "http://127.0.0.1:1/", phrase: "must be an https:// URL"},
		{name: "fail/user info", rel: webRelationship(), url: "https://u:secret@127.0.0.1:1/", phrase: "sections 5.2.1.1 and 5.2.2.1"},
		{name: "fail/user name alone", rel: webRelationship(), url: "https://secret@127.0.0.1:1/", phrase: `"https://xxxxx@127.0.0.1:1/"`},
		{name: "fail/unknown profile", rel: Relationship{TrustDomain: partner, Profile: "http"}, url: "https://127.0.0.1:1/", phrase: `unknown bundle endpoint profile "http"`},
		{name: "fail/trust of another trust domain", rel: spiffeRelationship(), url: "https://127.0.0.1:1/", trust: p.gamma.Bundle(), phrase: `is for "gamma.test"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.Fetch(t.Context(), tc.rel, mustURL(t, tc.url), tc.trust)
			fe, ok := errors.AsType[*FetchError](err)
			require.True(t, ok)
			require.Equal(t, ReasonConfig, fe.Reason)
			require.Contains(t, err.Error(), tc.phrase)
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

// TestDNSFailureIsExplained classifies a resolver error without asking a
// resolver: tests talk to loopback only, and a real lookup of an unknown
// name would leave the machine.
func TestDNSFailureIsExplained(t *testing.T) {
	a := &attempt{rel: webRelationship(), url: mustURL(t, "https://bundle.nonexistent.invalid/"), cfg: &FetcherConfig{}}
	err := a.transportError(&url.Error{Op: "Get", URL: a.url.String(), Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "bundle.nonexistent.invalid", IsNotFound: true}}})
	fe, ok := errors.AsType[*FetchError](err)
	require.True(t, ok, "%T", err)
	require.Equal(t, ReasonDNS, fe.Reason)
	require.Contains(t, fe.Error(), `cannot resolve "bundle.nonexistent.invalid": no such host`)
	require.Contains(t, fe.Error(), "check the host name")
}

// TestFetchReusesParseOfUnchangedBytes: an unchanged bundle is not parsed
// again; a changed one is.
func TestFetchReusesParseOfUnchangedBytes(t *testing.T) {
	p := newFetchPKI(t)
	var doc atomic.Value
	doc.Store(document(p.beta))
	target := webTarget(t, p.web.localhost(t), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(doc.Load().([]byte))
	}))
	f := NewFetcher(FetcherConfig{RootCAs: p.web.pool})
	defer f.Close()
	first, err := f.Fetch(t.Context(), target.rel, target.url, nil)
	require.NoError(t, err)
	again, err := f.Fetch(t.Context(), target.rel, target.url, nil)
	require.NoError(t, err)
	require.Same(t, first, again, "identical bytes reuse the parse")
	doc.Store(document(p.rotated))
	changed, err := f.Fetch(t.Context(), target.rel, target.url, nil)
	require.NoError(t, err)
	require.NotSame(t, first, changed)
	require.False(t, changed.Bundle.Equal(first.Bundle))
}
