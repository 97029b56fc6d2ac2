package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

var (
	portsMu sync.Mutex
	ports   = map[string]bool{}
)

// freePort returns a loopback port that was free a moment ago and that no
// other call in this test binary has returned. It is chosen below the
// kernel's ephemeral range (32768 and up here), so that an outgoing
// connection of any process cannot take it before the server that is to
// listen on it starts, or while that server is restarted.
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		var lc net.ListenConfig
		l, err := lc.Listen(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))) //nolint:gosec // a port, not a secret
		if err != nil {
			continue // taken
		}
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		if !ports[addr] {
			ports[addr] = true
			return addr
		}
	}
	t.Fatal("no fresh loopback port after 100 tries")
	return ""
}

// TestBundleEndpointSPIFFEProfile fetches a running server's bundle the way
// a federating partner does: go-spiffe's federation client, authenticating
// the endpoint's X509-SVID with the bundle obtained out of band.
func TestBundleEndpointSPIFFEProfile(t *testing.T) {
	addr := freePort(t)
	s := newServer(t, "alpha.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n", addr))
	s.start()
	td := spiffeid.RequireTrustDomainFromString("alpha.test")
	bootstrap := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
	url := "https://" + addr
	endpointID := spiffeid.RequireFromString("spiffe://alpha.test/spire/server")

	got, err := federation.FetchBundle(t.Context(), td, url, federation.WithSPIFFEAuth(bootstrap, endpointID))
	require.NoError(t, err, "server log:\n%s", s.log)
	require.True(t, got.Equal(bootstrap))

	_, err = federation.FetchBundle(t.Context(), td, url, federation.WithSPIFFEAuth(bootstrap, spiffeid.RequireFromString("spiffe://alpha.test/wrong")))
	require.Error(t, err)

	// A prepared authority is published on the endpoint without a restart.
	s.treaty("localauthority", "x509", "prepare")
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err = federation.FetchBundle(t.Context(), td, url, federation.WithSPIFFEAuth(bootstrap, endpointID))
		require.NoError(t, err)
		if len(got.X509Authorities()) == 2 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the endpoint still serves the old bundle")
		time.Sleep(20 * time.Millisecond) // the endpoint picks up changes asynchronously
	}
	seq, _ := got.SequenceNumber()
	require.Equal(t, uint64(2), seq)
}
