package agentapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // x509pop names agents by SHA-1 fingerprint, as spire-server does
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/datastore"
)

// attestWith runs AttestAgent on conn with a new key, answering challenges
// with answer (nil: a challenge is an error), and returns the SVID.
func attestWith(t *testing.T, conn *grpc.ClientConn, typ string, payload []byte, answer func([]byte) []byte) (*x509svid.SVID, *agentv1.AttestAgentResponse_Result, error) {
	t.Helper()
	key, csr := newKeyCSR(t)
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(t.Context())
	require.NoError(t, err)
	err = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: typ, Payload: payload},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}})
	require.NoError(t, err)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, nil, err
		}
		if c := resp.GetChallenge(); c != nil {
			require.NotNil(t, answer, "unexpected challenge")
			require.NoError(t, stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: answer(c)}}))
			continue
		}
		require.NotNil(t, resp.GetResult(), "a response with neither challenge nor result")
		require.NoError(t, stream.CloseSend())
		svid := agentSVID(t, resp.GetResult().GetSvid(), key)
		require.Equal(t, key.Public(), svid.Certificates[0].PublicKey, "the SVID certifies the CSR's key")
		return svid, resp.GetResult(), nil
	}
}

// joinToken stores a join token valid for an hour.
func (e *apiEnv) joinToken(t *testing.T, token string) {
	t.Helper()
	require.NoError(t, e.store.CreateJoinToken(t.Context(), datastore.JoinToken{Token: token, ExpiresAt: time.Now().Add(time.Hour)}))
}

// attestJoinToken attests a new agent with a fresh join token.
func (e *apiEnv) attestJoinToken(t *testing.T, token string) *x509svid.SVID {
	t.Helper()
	e.joinToken(t, token)
	svid, _, err := attestWith(t, e.dial(t, nil), "join_token", []byte(token), nil)
	require.NoError(t, err)
	return svid
}

func TestAttestJoinToken(t *testing.T) {
	e := startAPI(t)
	e.joinToken(t, "tok-1")
	conn := e.dial(t, nil)
	svid, result, err := attestWith(t, conn, "join_token", []byte("tok-1"), nil)
	require.NoError(t, err)
	require.False(t, result.GetReattestable())
	require.Equal(t, "spiffe://agents.test/spire/agent/join_token/tok-1", svid.ID.String())
	leaf := svid.Certificates[0]
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, svid.ID.String(), leaf.URIs[0].String())
	require.Equal(t, "/spire/agent/join_token/tok-1", result.GetSvid().GetId().GetPath())
	require.Equal(t, leaf.NotAfter.Unix(), result.GetSvid().GetExpiresAt())
	require.InDelta(t, time.Hour.Seconds(), time.Until(leaf.NotAfter).Seconds(), 60, "default agent SVID lifetime")
	_, _, err = x509svid.ParseAndVerify([][]byte{leaf.Raw}, e.ca.Bundle())
	require.NoError(t, err, "the SVID chains to the bundle")

	node, err := e.store.AttestedNode(t.Context(), svid.ID)
	require.NoError(t, err)
	require.Equal(t, "join_token", node.AttestationType)
	require.Equal(t, leaf.SerialNumber.String(), node.SerialNumber)
	require.False(t, node.CanReattest)
	require.Empty(t, node.Selectors)

	_, _, err = attestWith(t, conn, "join_token", []byte("tok-1"), nil)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a token is used once: %v", err)
}

func TestAttestAgentRefusals(t *testing.T) {
	e := startAPI(t)
	conn := e.dial(t, nil)
	_, csr := newKeyCSR(t)
	badSig := append([]byte(nil), csr...)
	badSig[len(badSig)-5] ^= 0xff
	params := func(typ, payload string, csr []byte) *agentv1.AttestAgentRequest_Params {
		return &agentv1.AttestAgentRequest_Params{Data: &types.AttestationData{Type: typ, Payload: []byte(payload)}, Params: &agentv1.AgentX509SVIDParams{Csr: csr}}
	}
	for _, tc := range []struct {
		name    string
		params  *agentv1.AttestAgentRequest_Params
		code    codes.Code
		message string
	}{
		{"fail/no params", nil, codes.InvalidArgument, "malformed param: missing params"},
		{"fail/no data", &agentv1.AttestAgentRequest_Params{Params: &agentv1.AgentX509SVIDParams{Csr: csr}}, codes.InvalidArgument, "malformed param: missing attestation data"},
		{"fail/no csr", params("join_token", "t", nil), codes.InvalidArgument, "malformed param: missing CSR"},
		{"fail/no type", params("", "t", csr), codes.InvalidArgument, "malformed param: missing attestation data type"},
		{"fail/no payload", params("join_token", "", csr), codes.InvalidArgument, "malformed param: missing attestation data payload"},
		{"fail/unknown attestor", params("aws_iid", "x", csr), codes.InvalidArgument, `no attestor of type "aws_iid"; this server accepts: join_token`},
		{"fail/garbage csr", params("join_token", "t", []byte("garbage")), codes.InvalidArgument, "failed to parse CSR"},
		{"fail/bad csr signature", params("join_token", "t", badSig), codes.InvalidArgument, "CSR"},
		{"fail/unknown token", params("join_token", "nope", csr), codes.PermissionDenied, "failed to attest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := agentv1.NewAgentClient(conn).AttestAgent(t.Context())
			require.NoError(t, err)
			req := &agentv1.AttestAgentRequest{}
			if tc.params != nil {
				req.Step = &agentv1.AttestAgentRequest_Params_{Params: tc.params}
			}
			require.NoError(t, stream.Send(req))
			_, err = stream.Recv()
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			require.Contains(t, status.Convert(err).Message(), tc.message)
		})
	}
}

// nodePKI is an operator's CA for x509pop node certificates.
type nodePKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newNodePKI(t *testing.T) *nodePKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &nodePKI{cert: cert, key: key}
}

// issue makes a node certificate for cn.
func (p *nodePKI) issue(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x1234), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key
}

// popAnswer answers an x509pop challenge as spire-agent does: sign
// SHA-256(server nonce ‖ own nonce) with the node key.
func popAnswer(t *testing.T, key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(challenge []byte) []byte {
		var c struct {
			ECDSA *struct{ Nonce []byte } `json:"ecdsa_signature"`
		}
		require.NoError(t, json.Unmarshal(challenge, &c))
		require.NotNil(t, c.ECDSA)
		own := make([]byte, 32)
		_, _ = rand.Read(own)
		sum := sha256.Sum256(append(append([]byte(nil), c.ECDSA.Nonce...), own...))
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		require.NoError(t, err)
		out, err := json.Marshal(map[string]any{"ecdsa_signature": map[string][]byte{"nonce": own, "r": r.Bytes(), "s": s.Bytes()}})
		require.NoError(t, err)
		return out
	}
}

func popPayload(t *testing.T, certs ...*x509.Certificate) []byte {
	t.Helper()
	var ders [][]byte
	for _, c := range certs {
		ders = append(ders, c.Raw)
	}
	out, err := json.Marshal(map[string][][]byte{"certificates": ders})
	require.NoError(t, err)
	return out
}

func TestAttestX509POP(t *testing.T) {
	pki := newNodePKI(t)
	e := startAPI(t, pki.cert)
	leaf, key := pki.issue(t, "node-1")
	fingerprint := sha1.Sum(leaf.Raw) //nolint:gosec // the agent ID's fingerprint
	wantID := "spiffe://agents.test/spire/agent/x509pop/" + hex.EncodeToString(fingerprint[:])

	t.Run("ok/attested", func(t *testing.T) {
		svid, result, err := attestWith(t, e.dial(t, nil), "x509pop", popPayload(t, leaf), popAnswer(t, key))
		require.NoError(t, err)
		require.True(t, result.GetReattestable())
		require.Equal(t, wantID, svid.ID.String())
		node, err := e.store.AttestedNode(t.Context(), svid.ID)
		require.NoError(t, err)
		require.True(t, node.CanReattest)
		require.Equal(t, "x509pop", node.AttestationType)
		require.Contains(t, node.Selectors, datastore.Selector{Type: "x509pop", Value: "subject:cn:node-1"})
	})
	t.Run("ok/attests again", func(t *testing.T) {
		svid, _, err := attestWith(t, e.dial(t, nil), "x509pop", popPayload(t, leaf), popAnswer(t, key))
		require.NoError(t, err)
		node, err := e.store.AttestedNode(t.Context(), svid.ID)
		require.NoError(t, err)
		require.Equal(t, svid.Certificates[0].SerialNumber.String(), node.SerialNumber, "the new SVID is current")
	})
	t.Run("fail/wrong key answers", func(t *testing.T) {
		_, other := pki.issue(t, "node-1")
		_, _, err := attestWith(t, e.dial(t, nil), "x509pop", popPayload(t, leaf), popAnswer(t, other))
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	})
	t.Run("fail/unknown CA", func(t *testing.T) {
		stranger, strangerKey := newNodePKI(t).issue(t, "node-2")
		_, _, err := attestWith(t, e.dial(t, nil), "x509pop", popPayload(t, stranger), popAnswer(t, strangerKey))
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	})
	t.Run("fail/banned", func(t *testing.T) {
		require.NoError(t, e.store.BanAttestedNode(t.Context(), idOf(t, wantID)))
		_, _, err := attestWith(t, e.dial(t, nil), "x509pop", popPayload(t, leaf), popAnswer(t, key))
		require.Equal(t, "failed to attest: agent is banned", status.Convert(err).Message())
		requireDenied(t, err, types.PermissionDeniedDetails_UNKNOWN)
	})
}

func idOf(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	require.NoError(t, err)
	return id
}
