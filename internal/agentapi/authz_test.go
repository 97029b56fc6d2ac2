package agentapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
)

// postStatus is the cheapest call that needs an authorised agent.
func postStatus(t *testing.T, e *apiEnv, svid *x509svid.SVID) error {
	t.Helper()
	_, err := agentv1.NewAgentClient(e.dial(t, svid)).PostStatus(t.Context(), &agentv1.PostStatusRequest{AgentVersion: "1.15.3"})
	return err
}

func TestAgentCallerRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, e *apiEnv, id spiffeid.ID)
		reason types.PermissionDeniedDetails_Reason
	}{
		{"fail/banned", func(t *testing.T, e *apiEnv, id spiffeid.ID) {
			require.NoError(t, e.store.BanAttestedNode(t.Context(), id))
		}, types.PermissionDeniedDetails_AGENT_BANNED},
		{"fail/evicted", func(t *testing.T, e *apiEnv, id spiffeid.ID) {
			require.NoError(t, e.store.DeleteAttestedNode(t.Context(), id))
		}, types.PermissionDeniedDetails_AGENT_NOT_ATTESTED},
		{"fail/serial not the node's", func(t *testing.T, e *apiEnv, id spiffeid.ID) {
			node, err := e.store.AttestedNode(t.Context(), id)
			require.NoError(t, err)
			node.SerialNumber = "12345"
			_, err = e.store.UpdateAttestedNode(t.Context(), node)
			require.NoError(t, err)
		}, types.PermissionDeniedDetails_AGENT_NOT_ACTIVE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startAPI(t)
			svid := e.attestJoinToken(t, "tok")
			require.NoError(t, postStatus(t, e, svid))
			tc.change(t, e, svid.ID)
			err := postStatus(t, e, svid)
			requireDenied(t, err, tc.reason)
			require.Equal(t, "authorization denied for method /spire.api.server.agent.v1.Agent/PostStatus", status.Convert(err).Message())
		})
	}
}

func TestAgentCallerWithoutClientCertificate(t *testing.T) {
	e := startAPI(t)
	err := postStatus(t, e, nil)
	requireDenied(t, err, types.PermissionDeniedDetails_UNKNOWN)
	require.Equal(t, "caller does not have an X509-SVID", status.Convert(err).Message())
}

func TestPostStatusRecordsVersion(t *testing.T) {
	e := startAPI(t)
	svid := e.attestJoinToken(t, "tok")
	require.NoError(t, postStatus(t, e, svid))
	node, err := e.store.AttestedNode(t.Context(), svid.ID)
	require.NoError(t, err)
	require.Equal(t, "1.15.3", node.AgentVersion)
}

func TestClientCertificateFromAnotherCARefused(t *testing.T) {
	e := startAPI(t)
	// Same trust domain, another CA: the server must not accept it.
	other, _ := catest.New(t, apiTD)
	stranger, err := other.MintX509SVID(spiffeid.RequireFromSegments(apiTD, "spire", "agent", "join_token", "x"))
	require.NoError(t, err)
	_, err = agentv1.NewAgentClient(e.dial(t, stranger)).PostStatus(t.Context(), &agentv1.PostStatusRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "refused in the handshake: %v", err)

	// And directly at the TLS layer.
	cfg := tlsconfig.MTLSClientConfig(stranger, e.ca.Bundle(), tlsconfig.AuthorizeAny())
	cfg.NextProtos = []string{"h2"}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(t.Context(), "tcp", e.addr)
	if err == nil {
		// TLS 1.3: the client learns of the refusal on its first read.
		_, err = conn.Read(make([]byte, 1))
		_ = conn.Close()
	}
	require.ErrorContains(t, err, "bad certificate")
}

func TestRenewAgent(t *testing.T) {
	e := startAPI(t)
	old := e.attestJoinToken(t, "tok")
	key, csr := newKeyCSR(t)
	resp, err := agentv1.NewAgentClient(e.dial(t, old)).RenewAgent(t.Context(), &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr}})
	require.NoError(t, err)
	renewed := agentSVID(t, resp.GetSvid(), key)
	require.Equal(t, old.ID, renewed.ID)
	require.Equal(t, key.Public(), renewed.Certificates[0].PublicKey)

	node, err := e.store.AttestedNode(t.Context(), old.ID)
	require.NoError(t, err)
	require.Equal(t, old.Certificates[0].SerialNumber.String(), node.SerialNumber, "the old SVID stays current")
	require.Equal(t, renewed.Certificates[0].SerialNumber.String(), node.NewSerialNumber)
	require.NoError(t, postStatus(t, e, old), "the old SVID works until the new one is used")

	require.NoError(t, postStatus(t, e, renewed), "first use promotes the new SVID")
	node, err = e.store.AttestedNode(t.Context(), old.ID)
	require.NoError(t, err)
	require.Equal(t, renewed.Certificates[0].SerialNumber.String(), node.SerialNumber)
	require.Empty(t, node.NewSerialNumber)

	requireDenied(t, postStatus(t, e, old), types.PermissionDeniedDetails_AGENT_NOT_ACTIVE)
}

func TestRenewAgentRefusals(t *testing.T) {
	pki := newNodePKI(t)
	e := startAPI(t, pki.cert)
	leaf, nodeKey := pki.issue(t, "node-1")
	popSVID, _, err := attestWith(t, e.dial(t, nil), "x509pop", popPayload(t, leaf), popAnswer(t, nodeKey))
	require.NoError(t, err)
	tokenSVID := e.attestJoinToken(t, "tok")
	_, csr := newKeyCSR(t)

	t.Run("fail/reattestable agent", func(t *testing.T) {
		_, err := agentv1.NewAgentClient(e.dial(t, popSVID)).RenewAgent(t.Context(), &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr}})
		requireDenied(t, err, types.PermissionDeniedDetails_AGENT_MUST_REATTEST)
		require.Equal(t, "agent must reattest instead of renew", status.Convert(err).Message())
	})
	t.Run("fail/no csr", func(t *testing.T) {
		_, err := agentv1.NewAgentClient(e.dial(t, tokenSVID)).RenewAgent(t.Context(), &agentv1.RenewAgentRequest{})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	})
	t.Run("fail/no client certificate", func(t *testing.T) {
		_, err := agentv1.NewAgentClient(e.dial(t, nil)).RenewAgent(t.Context(), &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr}})
		requireDenied(t, err, types.PermissionDeniedDetails_UNKNOWN)
	})
}

func TestAgentCallerExpired(t *testing.T) {
	// The handshake refuses an expired certificate; a connection that
	// outlives its client certificate reaches this check.
	c, store := catest.New(t, apiTD)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	id := spiffeid.RequireFromSegments(apiTD, "spire", "agent", "join_token", "x")
	chain, err := c.SignX509SVID(ca.X509SVIDParams{ID: id, PublicKey: key.Public()})
	require.NoError(t, err)
	srv, err := New(Config{Address: "x", TrustDomain: apiTD, SVIDSource: c, Bundle: c, Signer: c, Store: store, Entries: store, SVIDSigner: c,
		Now: func() time.Time { return chain[0].NotAfter.Add(time.Second) }})
	require.NoError(t, err)
	_, err = srv.agentCaller(peerContext(t, chain))
	requireDenied(t, err, types.PermissionDeniedDetails_AGENT_EXPIRED)
}

// peerContext is a call's context with chain as the verified client
// certificate.
func peerContext(t *testing.T, chain []*x509.Certificate) context.Context {
	info := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: chain}}
	return peer.NewContext(t.Context(), &peer.Peer{AuthInfo: info})
}
