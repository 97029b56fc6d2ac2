package nodeattest

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the challenge golden files under testdata/x509pop")

// goldenNonce is the server nonce of the golden challenges: bytes 0 to 31.
func goldenNonce() []byte {
	n := make([]byte, nonceSize)
	for i := range n {
		n[i] = byte(i)
	}
	return n
}

// TestChallengeWire pins the challenge we send to the bytes spire-agent
// v1.15.3 reads (testdata/x509pop/README.md says where they come from).
func TestChallengeWire(t *testing.T) {
	tests := []struct {
		name string
		alg  x509.PublicKeyAlgorithm
		file string
	}{
		{name: "ok/ecdsa", alg: x509.ECDSA, file: "challenge-ecdsa.json"},
		{name: "ok/rsa", alg: x509.RSA, file: "challenge-rsa.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(newChallenge(tc.alg, goldenNonce()))
			require.NoError(t, err)
			path := filepath.Join("testdata", "x509pop", tc.file)
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
		})
	}
}

// TestSPIREAgentResponses verifies responses that spire-agent v1.15.3's own
// x509pop code computed for the golden challenges, so that the member names,
// the encoding and the signed digest are the agent's and not only our
// reading of them.
func TestSPIREAgentResponses(t *testing.T) {
	tests := []struct {
		name     string
		leaf     string
		response string
		nonce    func() []byte
		wantErr  string
	}{
		{name: "ok/ecdsa", leaf: "leaf-ecdsa.pem", response: "response-ecdsa.json", nonce: goldenNonce},
		{name: "ok/rsa", leaf: "leaf-rsa.pem", response: "response-rsa.json", nonce: goldenNonce},
		{name: "fail/ecdsa for another challenge", leaf: "leaf-ecdsa.pem", response: "response-ecdsa.json",
			nonce: otherNonce, wantErr: "the ECDSA signature does not verify"},
		{name: "fail/rsa for another challenge", leaf: "leaf-rsa.pem", response: "response-rsa.json",
			nonce: otherNonce, wantErr: "the RSA signature does not verify"},
		{name: "fail/rsa response for the ecdsa key", leaf: "leaf-ecdsa.pem", response: "response-rsa.json",
			nonce: goldenNonce, wantErr: "the response has no ECDSA signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := readLeaf(t, tc.leaf)
			raw, err := os.ReadFile(filepath.Join("testdata", "x509pop", tc.response))
			require.NoError(t, err)
			resp, err := parseResponse(raw)
			require.NoError(t, err)

			err = verifyResponse(leaf.PublicKey, tc.nonce(), resp)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, ErrDenied)
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
}

// otherNonce is the golden nonce with its last byte changed.
func otherNonce() []byte {
	n := goldenNonce()
	n[len(n)-1] ^= 0xff
	return n
}

func readLeaf(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "x509pop", name))
	require.NoError(t, err)
	block, _ := pem.Decode(raw)
	require.NotNil(t, block, "no PEM in %s", name)
	leaf, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return leaf
}

// TestSPIREAgentIDs checks the default agent ID against the one SPIRE
// v1.15.3's x509pop.MakeAgentID gave the golden leaves.
func TestSPIREAgentIDs(t *testing.T) {
	tests := []struct {
		name string
		leaf string
		want string
	}{
		{name: "ok/ecdsa", leaf: "leaf-ecdsa.pem", want: "spiffe://example.org/spire/agent/x509pop/b52b6a4acd4c73a4a6307517f8c51796005752db"},
		{name: "ok/rsa", leaf: "leaf-rsa.pem", want: "spiffe://example.org/spire/agent/x509pop/19b61e43458bfbc95afc4a8b253dd18fc0d60b55"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := readLeaf(t, tc.leaf)
			cas := x509.NewCertPool()
			cas.AddCert(leaf)
			a, err := NewX509POP(X509POPConfig{TrustDomain: td, CAs: cas})
			require.NoError(t, err)
			id, err := a.agentID(leaf)
			require.NoError(t, err)
			require.Equal(t, tc.want, id.String())
			require.Equal(t, "0abc", serialNumberHex(leaf.SerialNumber))
		})
	}
}
