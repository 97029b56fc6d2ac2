package agentapi

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/nodeattest"
)

var apiTD = spiffeid.RequireTrustDomainFromString("agents.test")

// apiEnv is a running agent API over a real CA and store.
type apiEnv struct {
	srv   *Server
	ca    *ca.CA
	store *sqlite.Store
	addr  string
}

// startAPI serves the agent API on 127.0.0.1 with the join_token attestor,
// and the x509pop one when nodeCAs is given, until the test ends.
func startAPI(t *testing.T, nodeCAs ...*x509.Certificate) *apiEnv {
	t.Helper()
	c, store := catest.New(t, apiTD)
	jt, err := nodeattest.NewJoinToken(nodeattest.JoinTokenConfig{TrustDomain: apiTD, Tokens: JoinTokens{Store: store}})
	require.NoError(t, err)
	attestors := []nodeattest.Attestor{jt}
	if len(nodeCAs) > 0 {
		pool := x509.NewCertPool()
		for _, cert := range nodeCAs {
			pool.AddCert(cert)
		}
		pop, err := nodeattest.NewX509POP(nodeattest.X509POPConfig{TrustDomain: apiTD, CAs: pool})
		require.NoError(t, err)
		attestors = append(attestors, pop)
	}
	srv, err := New(Config{Address: "127.0.0.1:0", TrustDomain: apiTD, SVIDSource: c, Bundle: c, Signer: c, Store: store, Entries: store, SVIDSigner: c, Attestors: attestors})
	require.NoError(t, err)
	l, err := srv.Listen(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &apiEnv{srv: srv, ca: c, store: store, addr: l.Addr().String()}
}

// dial connects as an agent does: the server must present exactly
// spiffe://<td>/spire/server chaining to our bundle; the client presents
// svid when one is given.
func (e *apiEnv) dial(t *testing.T, svid *x509svid.SVID) *grpc.ClientConn {
	t.Helper()
	authorize := tlsconfig.AuthorizeID(spiffeid.RequireFromSegments(apiTD, "spire", "server"))
	cfg := tlsconfig.TLSClientConfig(e.ca.Bundle(), authorize)
	if svid != nil {
		cfg = tlsconfig.MTLSClientConfig(svid, e.ca.Bundle(), authorize)
	}
	return dialTLS(t, e.addr, cfg)
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// newKeyCSR makes an agent key and a CSR for it without a URI SAN, as
// spire-agent does.
func newKeyCSR(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
	}, key)
	require.NoError(t, err)
	return key, csr
}

// agentSVID is the SVID of an attestation or renewal with its key.
func agentSVID(t *testing.T, in *types.X509SVID, key crypto.Signer) *x509svid.SVID {
	t.Helper()
	var chain []*x509.Certificate
	for _, der := range in.GetCertChain() {
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		chain = append(chain, cert)
	}
	require.NotEmpty(t, chain)
	id, err := x509svid.IDFromCert(chain[0])
	require.NoError(t, err)
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}
}

// requireDenied checks a refusal as the agent reads it: PermissionDenied
// and, when want is not UNKNOWN, PermissionDeniedDetails with want.
func requireDenied(t *testing.T, err error, want types.PermissionDeniedDetails_Reason) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.PermissionDenied, st.Code(), "%v", err)
	var got []types.PermissionDeniedDetails_Reason
	for _, d := range st.Details() {
		if pd, ok := d.(*types.PermissionDeniedDetails); ok {
			got = append(got, pd.GetReason())
		}
	}
	if want == types.PermissionDeniedDetails_UNKNOWN {
		require.Empty(t, got)
		return
	}
	require.Equal(t, []types.PermissionDeniedDetails_Reason{want}, got)
}

func TestNewRequiresConfig(t *testing.T) {
	_, err := New(Config{TrustDomain: apiTD})
	require.ErrorContains(t, err, "no address")
}

func TestServerSVIDIsSPIREServerID(t *testing.T) {
	e := startAPI(t)
	var seen *x509.Certificate
	cfg := &tls.Config{
		InsecureSkipVerify: true, // checked below, as go-spiffe does for the agent
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, chains, err := x509svid.ParseAndVerify(raw, e.ca.Bundle())
			if err == nil {
				seen = chains[0][0]
				require.Equal(t, "spiffe://agents.test/spire/server", id.String())
			}
			return err
		},
		NextProtos: []string{"h2"},
	}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(t.Context(), "tcp", e.addr)
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "h2", conn.(*tls.Conn).ConnectionState().NegotiatedProtocol)
	require.Len(t, seen.URIs, 1)
}

func TestAdminMethodsAreNotServed(t *testing.T) {
	e := startAPI(t)
	conn := e.dial(t, nil)
	_, err := agentv1.NewAgentClient(conn).ListAgents(t.Context(), &agentv1.ListAgentsRequest{})
	require.Equal(t, codes.Unimplemented, status.Code(err))
	require.ErrorContains(t, err, "admin socket")
	_, err = bundlev1.NewBundleClient(conn).CountBundles(t.Context(), &bundlev1.CountBundlesRequest{})
	require.Equal(t, codes.Unimplemented, status.Code(err))
}

func TestServeStopsWhenContextEnds(t *testing.T) {
	c, store := catest.New(t, apiTD)
	srv, err := New(Config{Address: "127.0.0.1:0", TrustDomain: apiTD, SVIDSource: c, Bundle: c, Signer: c, Store: store, Entries: store, SVIDSigner: c})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	l, err := srv.Listen(ctx)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	cancel()
	require.NoError(t, <-done)
}

func TestServerSVIDRenewedOnAuthorityChange(t *testing.T) {
	e := startAPI(t)
	before := e.srv.svid.current.Load().Leaf
	prepared, err := e.ca.Prepare(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	_, _, err = e.ca.Activate(t.Context(), datastore.KindX509, prepared.ID)
	require.NoError(t, err)
	// The server renews in the background when the CA announces the change.
	require.Eventually(t, func() bool {
		return !bytes.Equal(e.srv.svid.current.Load().Leaf.AuthorityKeyId, before.AuthorityKeyId)
	}, 5*time.Second, 10*time.Millisecond, "signed by the newly active authority")
	_, err = bundlev1.NewBundleClient(e.dial(t, nil)).GetBundle(t.Context(), &bundlev1.GetBundleRequest{})
	require.NoError(t, err, "an agent holding the new bundle accepts the new SVID")
}

func TestServerSVIDDueAtHalfLife(t *testing.T) {
	c, _ := catest.New(t, apiTD)
	now := time.Now()
	v := &serverSVID{id: spiffeid.RequireFromSegments(apiTD, "spire", "server"), source: c, now: func() time.Time { return now }}
	require.NoError(t, v.renew())
	leaf := v.current.Load().Leaf
	half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	require.False(t, v.due())
	require.InDelta(t, half.Sub(now).Seconds(), v.nextCheck().Seconds(), 1)
	now = half
	require.True(t, v.due())
	require.Equal(t, time.Second, v.nextCheck(), "never a busy loop")
}
