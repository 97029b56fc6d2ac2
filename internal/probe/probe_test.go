package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundleendpoint"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/profile"
)

var td = spiffeid.RequireTrustDomainFromString("beta.test")

// spiffeEndpoint runs treaty's own https_spiffe bundle endpoint.
func spiffeEndpoint(t *testing.T, c *ca.CA) string {
	t.Helper()
	s, err := bundleendpoint.New(bundleendpoint.Config{Address: "127.0.0.1:0", Profile: profile.HTTPSSPIFFE,
		EndpointSPIFFEID: spiffeid.RequireFromString("spiffe://beta.test/spire/server"), SVIDSource: c, Source: c})
	require.NoError(t, err)
	l, err := s.Listen(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return "https://" + l.Addr().String()
}

// webServer serves h with a certificate for names from a fresh CA; it
// returns the URL and a pool trusting that CA.
func webServer(t *testing.T, h http.Handler, dnsNames []string, ips []net.IP) (string, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Probe Test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "web"}, DNSNames: dnsNames, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return srv.URL, pool
}

func stepOf(r *Report, check finding.CheckID) finding.Finding {
	for _, s := range r.Steps {
		if s.Check == check {
			return s
		}
	}
	return finding.Finding{}
}

func TestProbe(t *testing.T) {
	c, _ := catest.New(t, td)
	spiffeURL := spiffeEndpoint(t, c)
	doc, _ := c.Document()
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	bundleJSON := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	webURL, webRoots := webServer(t, bundleJSON, nil, loopback)
	wrongNameURL, wrongNameRoots := webServer(t, bundleJSON, []string{"ingress.local"}, nil)
	htmlURL, htmlRoots := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
	}), nil, loopback)
	serve := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
		})
	}
	emptyURL, emptyRoots := webServer(t, serve(`{"keys":[{"use":"x509-svid","kty":"EC"},{"use":"jwt-svid","kty":"EC"}]}`), nil, loopback)
	partlyURL, partlyRoots := webServer(t, serve(strings.Replace(string(doc), `"keys":[`, `"keys":[{"use":"x509-svid","kty":"EC"},`, 1)), nil, loopback)
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "https://" + l.Addr().String()
	require.NoError(t, l.Close())
	endpointID := spiffeid.RequireFromString("spiffe://beta.test/spire/server")

	tests := []struct {
		name    string
		cfg     Config
		verdict finding.Severity
		step    finding.CheckID
		status  finding.Severity
		phrase  string
	}{
		{"ok/https_spiffe with bundle", Config{URL: spiffeURL, Bundle: c.Bundle()}, finding.Pass, "https_spiffe", finding.Pass, "verifies with the bundle of beta.test"},
		{"ok/https_spiffe without bundle warns", Config{URL: spiffeURL}, finding.Warn, "https_spiffe", finding.Warn, "will need one (bootstrap)"},
		{"ok/https_web", Config{URL: webURL, Roots: webRoots, TrustDomain: td}, finding.Pass, "bundle", finding.Pass, "SPIFFE bundle of beta.test"},
		{"ok/trust domain inferred from the bundle", Config{URL: webURL, Roots: webRoots}, finding.Pass, "bundle", finding.Pass, "SPIFFE bundle of beta.test"},
		{"fail/wrong endpoint ID", Config{URL: spiffeURL, Bundle: c.Bundle(), EndpointID: spiffeid.RequireFromString("spiffe://beta.test/other")}, finding.Fail, "endpoint_id", finding.Fail, "expected spiffe://beta.test/other"},
		{"fail/web certificate where an SVID is expected", Config{URL: webURL, Roots: webRoots, EndpointID: endpointID}, finding.Fail, "https_spiffe", finding.Fail, "no URI SAN"},
		{"fail/SVID where https_web is expected", Config{URL: spiffeURL, Bundle: c.Bundle(), Profile: "https_web"}, finding.Fail, "profile", finding.Fail,
			"this endpoint presents an X509-SVID for spiffe://beta.test/spire/server, not a web certificate for its host: it is an https_spiffe endpoint use bundleEndpointProfile https_spiffe with endpointSpiffeID spiffe://beta.test/spire/server"},
		{"fail/web certificate where https_spiffe is expected", Config{URL: webURL, Roots: webRoots, Profile: "https_spiffe"}, finding.Fail, "https_spiffe", finding.Fail, "use -bundleEndpointProfile https_web"},
		// SPIFFE Trust Domain and Bundle §4.1.3 and §4.2.
		{"fail/effectively empty bundle", Config{URL: emptyURL, Roots: emptyRoots, TrustDomain: td}, finding.Fail, "bundle", finding.Fail, "every one of the 2 entries of the bundle is ignored"},
		{"ok/ignored entry reported, the rest used", Config{URL: partlyURL, Roots: partlyRoots, TrustDomain: td}, finding.Warn, "bundle", finding.Pass, "1 X.509 and 1 JWT authorities, refresh hint 5m0s, sequence 1, earliest authority expiry"},
		{"fail/unknown web CA", Config{URL: webURL}, finding.Fail, "https_web", finding.Fail, "does not validate as https_web"},
		{"fail/name mismatch", Config{URL: wrongNameURL, Roots: wrongNameRoots}, finding.Fail, "https_web", finding.Fail, "ingress.local"},
		{"fail/html page", Config{URL: htmlURL, Roots: htmlRoots}, finding.Fail, "http", finding.Fail, "HTML page"},
		{"fail/refused", Config{URL: refused}, finding.Fail, "tcp", finding.Fail, "connect to"},
		{"fail/plain http", Config{URL: "http://127.0.0.1:1/"}, finding.Fail, "url", finding.Fail, "requires TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Run(t.Context(), tt.cfg)
			require.Equal(t, tt.verdict, r.Verdict, "%+v", r.Steps)
			s := stepOf(r, tt.step)
			require.Equal(t, tt.status, s.Severity, "%+v", r.Steps)
			require.Contains(t, s.Message+" "+s.Fix, tt.phrase)
		})
	}

	r := Run(t.Context(), Config{URL: partlyURL, Roots: partlyRoots, TrustDomain: td})
	require.Contains(t, stepOf(r, "bundle").Message, "; 1 of its 3 entries ignored (see the warnings)")
	require.Contains(t, r.Steps[len(r.Steps)-1].Message, `keys[0] (x509-svid) ignored: no certificate in "x5c"`)

	r = Run(t.Context(), Config{URL: spiffeURL, Bundle: c.Bundle()})
	require.Equal(t, "https_spiffe", r.Profile)
	require.True(t, strings.HasPrefix(r.Create, "treaty federation create -trustDomain beta.test -bundleEndpointURL "+spiffeURL+" -bundleEndpointProfile https_spiffe -endpointSpiffeID spiffe://beta.test/spire/server"), r.Create)
	require.Contains(t, r.Onboarding, "endpointSPIFFEID: spiffe://beta.test/spire/server")
}
