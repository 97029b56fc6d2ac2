package bundleendpoint

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/profile"
)

var (
	td         = spiffeid.RequireTrustDomainFromString("alpha.test")
	endpointID = spiffeid.RequireFromString("spiffe://alpha.test/spire/server")
)

// newCA is the CA of the endpoint's trust domain: authorities that live an
// hour, a refresh hint of a minute.
func newCA(t testing.TB) *ca.CA {
	c, _ := catest.New(t, td, catest.Lifetimes(time.Hour, time.Minute))
	return c
}

// serve runs the endpoint on a loopback port and returns its URL.
func serve(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	cfg.Address = "127.0.0.1:0"
	s, err := New(cfg)
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
	return s, "https://" + l.Addr().String() + "/"
}

func TestHTTPSSPIFFE(t *testing.T) {
	c := newCA(t)
	s, url := serve(t, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c})
	ctx := t.Context()
	chain := s.SVID()
	require.NotEmpty(t, chain, "the server's own SVID, for the Debug API")
	require.Equal(t, endpointID.URL().String(), chain[0].URIs[0].String())

	// go-spiffe's federation client, with SPIFFE authentication against
	// our own bundle, accepts the endpoint and gets the bundle we publish.
	got, err := federation.FetchBundle(ctx, td, url, federation.WithSPIFFEAuth(c.Bundle(), endpointID))
	require.NoError(t, err)
	require.True(t, got.Equal(c.Bundle()))

	_, err = federation.FetchBundle(ctx, td, url, federation.WithSPIFFEAuth(c.Bundle(), spiffeid.RequireFromString("spiffe://alpha.test/other")))
	require.Error(t, err, "a client expecting another endpoint ID must refuse")

	// A rotation reaches the endpoint without a restart: the new authority
	// is served in the bundle, and after activation the endpoint's SVID is
	// signed by it.
	prepared, err := c.Prepare(ctx, datastore.KindX509)
	require.NoError(t, err)
	got = fetchUntil(t, url, c.Bundle(), func(b *spiffebundle.Bundle) bool { return len(b.X509Authorities()) == 2 })
	require.True(t, got.Equal(c.Bundle()))
	_, _, err = c.Activate(ctx, datastore.KindX509, prepared.ID)
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for issuerSKID(t, url) != prepared.ID {
		require.True(t, time.Now().Before(deadline), "endpoint SVID not renewed after activation")
		time.Sleep(20 * time.Millisecond) // poll the endpoint; the renewal is asynchronous
	}
}

// fetchUntil fetches until ok accepts the bundle, for at most 10 seconds.
func fetchUntil(t *testing.T, url string, trust *spiffebundle.Bundle, ok func(*spiffebundle.Bundle) bool) *spiffebundle.Bundle {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := federation.FetchBundle(t.Context(), td, url, federation.WithSPIFFEAuth(trust, endpointID))
		require.NoError(t, err)
		if ok(b) {
			return b
		}
		require.True(t, time.Now().Before(deadline), "endpoint did not serve the new bundle")
		time.Sleep(20 * time.Millisecond) // poll the endpoint; the update is asynchronous
	}
}

func issuerSKID(t *testing.T, url string) string {
	t.Helper()
	conn, err := (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}).DialContext(t.Context(), "tcp", url[len("https://"):len(url)-1]) //nolint:gosec // only reading the presented chain
	require.NoError(t, err)
	defer conn.Close()
	leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	return hexString(leaf.AuthorityKeyId)
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// webPKI writes a test CA and a server certificate for 127.0.0.1 signed by
// it, and returns the CA pool.
func webPKI(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Web CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	certFile, keyFile := writeLeaf(t, dir, caCert, caKey, 2)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, certFile, keyFile
}

func writeLeaf(t *testing.T, dir string, caCert *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "bundle.alpha.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func TestHTTPSWeb(t *testing.T) {
	c := newCA(t)
	dir := t.TempDir()
	pool, certFile, keyFile := webPKI(t, dir)
	s, url := serve(t, Config{Profile: profile.HTTPSWeb, CertFile: certFile, KeyFile: keyFile, Source: c})

	got, err := federation.FetchBundle(t.Context(), td, url, federation.WithWebPKIRoots(pool))
	require.NoError(t, err)
	require.True(t, got.Equal(c.Bundle()))
	first := s.web.current.Load()
	require.Nil(t, s.SVID(), "a web certificate is no SVID")

	// A half-written pair (certificate replaced, key not yet) is ignored.
	require.NoError(t, os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nAAAA"), 0o600))
	_, err = s.web.load()
	require.Error(t, err)
	require.Same(t, first, s.web.current.Load())
	_, err = federation.FetchBundle(t.Context(), td, url, federation.WithWebPKIRoots(pool))
	require.NoError(t, err, "the previous pair is still served")
}

func TestNewFailsWithoutUsableCertificate(t *testing.T) {
	c := newCA(t)
	_, err := New(Config{Address: "127.0.0.1:0", Profile: profile.HTTPSWeb, CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key", Source: c})
	require.ErrorContains(t, err, "web certificate")
	_, err = New(Config{Address: "127.0.0.1:0", Profile: "http", Source: c})
	require.ErrorContains(t, err, "use https_web or https_spiffe")
}

func TestHandler(t *testing.T) {
	h := &handler{}
	h.current.Store(newResponse([]byte(`{"keys":[]}`), 7))
	do := func(method, path string, hdr map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(t.Context(), method, path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := do(http.MethodGet, "/", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, `{"keys":[]}`, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	etag := rec.Header().Get("ETag")
	require.Regexp(t, `^"7-[0-9a-f]{16}"$`, etag)

	tests := []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		code   int
		body   string
	}{
		{"ok/head has no body", http.MethodHead, "/", nil, http.StatusOK, ""},
		{"ok/not modified", http.MethodGet, "/", map[string]string{"If-None-Match": etag}, http.StatusNotModified, ""},
		{"ok/weak etag list", http.MethodGet, "/", map[string]string{"If-None-Match": `"x", W/` + etag}, http.StatusNotModified, ""},
		{"ok/stale etag", http.MethodGet, "/", map[string]string{"If-None-Match": `"6-0000"`}, http.StatusOK, `{"keys":[]}`},
		{"fail/post", http.MethodPost, "/", nil, http.StatusMethodNotAllowed, "method not allowed\n"},
		{"fail/other path", http.MethodGet, "/bundle", nil, http.StatusNotFound, "not found: the bundle is served at /\n"},
		{"fail/post to other path is a bad method first", http.MethodPost, "/bundle", nil, http.StatusMethodNotAllowed, "method not allowed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(tt.method, tt.path, tt.hdr)
			require.Equal(t, tt.code, rec.Code)
			require.Equal(t, tt.body, rec.Body.String())
		})
	}
	require.Equal(t, "GET, HEAD", do(http.MethodDelete, "/", nil).Header().Get("Allow"))
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(2, func() time.Time { return now })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	require.True(t, l.allow(a))
	require.True(t, l.allow(a))
	require.False(t, l.allow(a), "burst of 2 used up")
	require.True(t, l.allow(b), "clients have their own buckets")
	now = now.Add(500 * time.Millisecond)
	require.True(t, l.allow(a), "one token back after half a second")
	require.False(t, l.allow(a))

	h := &handler{limiter: newLimiter(1, func() time.Time { return now })}
	h.current.Store(newResponse([]byte(`{}`), 1))
	codes := []int{}
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
		codes = append(codes, rec.Code)
	}
	require.Equal(t, []int{http.StatusOK, http.StatusTooManyRequests}, codes)
}
