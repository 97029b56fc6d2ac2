package bundleendpoint

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/profile"
)

var (
	betaTD  = spiffeid.RequireTrustDomainFromString("beta.test")
	gammaTD = spiffeid.RequireTrustDomainFromString("gamma.test")
)

// A client certificate is asked for, never required: anonymous clients
// (go-spiffe, curl) are served as before in both profiles; a partner's
// federation client that authenticates with the bundle stored for its
// trust domain is recorded, and nobody else is.
func TestReceipts(t *testing.T) {
	c, _ := catest.New(t, td, catest.Lifetimes(time.Hour, time.Minute))
	beta, _ := catest.New(t, betaTD)
	gamma, _ := catest.New(t, gammaTD) // not a partner: no bundle stored for it
	partners := partnerSet{betaTD: beta.Bundle().X509Authorities()}
	_, seq := c.Document()

	pool, certFile, keyFile := webPKI(t, t.TempDir())
	profiles := []struct {
		name string
		cfg  Config
		// fetch is an anonymous go-spiffe client of the profile.
		fetch []federation.FetchOption
	}{
		{"https_spiffe", Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c},
			[]federation.FetchOption{federation.WithSPIFFEAuth(c.Bundle(), endpointID)}},
		{"https_web", Config{Profile: profile.HTTPSWeb, CertFile: certFile, KeyFile: keyFile},
			[]federation.FetchOption{federation.WithWebPKIRoots(pool)}},
	}
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			store := &memStore{}
			receipts := NewReceipts(ReceiptsConfig{Partners: partners, Store: store})
			p.cfg.Source, p.cfg.Receipts = c, receipts
			_, endpoint := serve(t, p.cfg)

			got, err := federation.FetchBundle(t.Context(), td, endpoint, p.fetch...)
			require.NoError(t, err, "go-spiffe without a client certificate")
			require.True(t, got.Equal(c.Bundle()))
			if curl, err := exec.LookPath("curl"); err == nil {
				out, err := exec.CommandContext(t.Context(), curl, "-sSf", "--insecure", endpoint).Output() //nolint:gosec // test binary and URL
				require.NoError(t, err, "curl without a client certificate")
				doc, _ := c.Document()
				require.Equal(t, string(doc), string(out))
			}

			for _, client := range []struct {
				name string
				cert tls.Certificate
			}{
				{"gamma, no partner", clientSVID(t, gamma, profile.FederationClientID(gammaTD))},
				{"beta, another workload", clientSVID(t, beta, spiffeid.RequireFromPath(betaTD, "/web"))},
				{"self-signed, naming beta's client", selfSigned(t, profile.FederationClientID(betaTD))},
			} {
				require.Equal(t, http.StatusOK, getWith(t, endpoint, client.cert), "%s: served all the same", client.name)
			}
			receipts.flush(t.Context())
			require.Empty(t, store.put, "nobody authenticated as a partner's federation client")

			before := time.Now()
			require.Equal(t, http.StatusOK, getWith(t, endpoint, clientSVID(t, beta, profile.FederationClientID(betaTD))))
			receipts.flush(t.Context())
			list := store.put
			require.Len(t, list, 1)
			require.Equal(t, betaTD, list[0].TrustDomain)
			require.Equal(t, seq, list[0].Sequence)
			require.False(t, list[0].FetchedAt.Before(before.Truncate(time.Microsecond)))
		})
	}
}

// Receipts written while the store fails are kept for the next flush.
func TestReceiptsKeptWhenTheStoreFails(t *testing.T) {
	store := &memStore{fail: true}
	r := NewReceipts(ReceiptsConfig{Store: store})
	r.pending[betaTD] = datastore.Receipt{TrustDomain: betaTD, Sequence: 4}
	r.flush(t.Context())
	require.Len(t, r.pending, 1)
	store.fail = false
	r.flush(t.Context())
	require.Empty(t, r.pending)
	require.Equal(t, []datastore.Receipt{{TrustDomain: betaTD, Sequence: 4}}, store.put)
}

// partnerSet is the partners' stored bundles.
type partnerSet map[spiffeid.TrustDomain][]*x509.Certificate

func (p partnerSet) X509Authorities(_ context.Context, td spiffeid.TrustDomain) ([]*x509.Certificate, error) {
	if a, ok := p[td]; ok {
		return a, nil
	}
	return nil, datastore.ErrNotFound
}

// memStore keeps the receipts written to it, or fails.
type memStore struct {
	mu   sync.Mutex
	fail bool
	put  []datastore.Receipt
}

func (s *memStore) PutReceipts(_ context.Context, rs []datastore.Receipt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("database is locked")
	}
	s.put = append(s.put, rs...)
	return nil
}

func (s *memStore) written() []datastore.Receipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.put)
}

// getWith fetches the bundle presenting cert, trusting any server.
func getWith(t *testing.T, endpoint string, cert tls.Certificate) int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // the client certificate is under test, not the server's
		Certificates:       []tls.Certificate{cert},
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint, nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func clientSVID(t *testing.T, c *ca.CA, id spiffeid.ID) tls.Certificate {
	t.Helper()
	svid, err := c.MintX509SVID(id)
	require.NoError(t, err)
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

func selfSigned(t *testing.T, id spiffeid.ID) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(id.String())
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A partner served a new sequence is written at once; the same sequence
// again waits for the next interval.
func TestReceiptsWriteANewSequenceAtOnce(t *testing.T) {
	beta, _ := catest.New(t, betaTD)
	svid, err := beta.MintX509SVID(profile.FederationClientID(betaTD))
	require.NoError(t, err)
	partners := partnerSet{betaTD: beta.Bundle().X509Authorities()}
	now := time.Now() // the SVID's time; the bubble's clock starts in 2000
	synctest.Test(t, func(t *testing.T) {
		store := &memStore{}
		r := NewReceipts(ReceiptsConfig{Partners: partners, Store: store, FlushInterval: time.Minute, Now: func() time.Time { return now }})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()

		r.record(t.Context(), svid.Certificates, 7)
		synctest.Wait()
		require.Len(t, store.written(), 1, "a new sequence is written at once")
		r.record(t.Context(), svid.Certificates, 7)
		synctest.Wait()
		require.Len(t, store.written(), 1, "the same sequence waits")
		time.Sleep(time.Minute) // the flush interval, on the bubble's clock
		synctest.Wait()
		require.Len(t, store.written(), 2)
		cancel()
		require.NoError(t, <-done)
	})
}

// Behind a TLS-terminating proxy the client certificate arrives in a
// header: it counts only from a trusted proxy's address, and only as a
// certificate shown directly would.
func TestReceiptsFromAForwardedCertificate(t *testing.T) {
	beta, _ := catest.New(t, betaTD)
	partners := partnerSet{betaTD: beta.Bundle().X509Authorities()}
	escaped := func(cert tls.Certificate) string {
		var text []byte
		for _, der := range cert.Certificate {
			text = append(text, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		return url.PathEscape(string(text)) // as NGINX's $ssl_client_escaped_cert: %20, %0A, …
	}
	client := escaped(clientSVID(t, beta, profile.FederationClientID(betaTD)))
	forwarded := Forwarded{Header: "X-SPIFFE-Client-Cert", Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	for _, tc := range []struct {
		name      string
		remote    string
		header    string
		forwarded Forwarded
		recorded  bool
	}{
		{"ok/from a trusted proxy", "10.1.2.3:4567", client, forwarded, true},
		{"ok/from a trusted proxy over IPv6", "[::1]:4567", client, forwarded, true},
		{"ok/from a trusted proxy, an IPv4-mapped address", "[::ffff:10.1.2.3]:4567", client, forwarded, true},
		{"fail/from anyone else", "192.0.2.1:4567", client, forwarded, false},
		{"fail/no header configured", "10.1.2.3:4567", client, Forwarded{}, false},
		{"fail/not a certificate", "10.1.2.3:4567", url.PathEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), forwarded, false},
		{"fail/not escaped PEM", "10.1.2.3:4567", "%zz", forwarded, false},
		{"fail/another workload of the partner", "10.1.2.3:4567", escaped(clientSVID(t, beta, spiffeid.RequireFromPath(betaTD, "/web"))), forwarded, false},
		{"fail/self-signed, naming the partner's client", "10.1.2.3:4567", escaped(selfSigned(t, profile.FederationClientID(betaTD))), forwarded, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{}
			r := NewReceipts(ReceiptsConfig{Partners: partners, Store: store, Forwarded: tc.forwarded})
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil)
			req.RemoteAddr = tc.remote
			req.Header.Set("X-Spiffe-Client-Cert", tc.header)
			r.recordRequest(req, 7)
			r.flush(t.Context())
			if !tc.recorded {
				require.Empty(t, store.written())
				return
			}
			require.Len(t, store.written(), 1)
			require.Equal(t, betaTD, store.written()[0].TrustDomain)
			require.Equal(t, uint64(7), store.written()[0].Sequence)
		})
	}
}
