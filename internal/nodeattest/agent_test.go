package nodeattest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// testAgent plays spire-agent's side of x509pop. It is written from the wire
// format, not from the server's code: generic JSON, base64 by hand.
type testAgent struct {
	chain []*x509.Certificate // leaf first
	// key signs the answer: the leaf's key, or another to fail.
	key crypto.Signer
	// nonceSize of the agent's own nonce; 0 means 32.
	nonceSize int
	// corrupt flips a bit of the signature.
	corrupt bool
}

// payload is what the agent sends first: {"certificates": [base64 DER...]}.
func (a testAgent) payload() []byte {
	certs := make([]string, len(a.chain))
	for i, c := range a.chain {
		certs[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	b, err := json.Marshal(map[string][]string{"certificates": certs})
	if err != nil {
		panic(err)
	}
	return b
}

// challengeFunc answers the server's challenges, counting them.
func (a testAgent) challengeFunc(t *testing.T, calls *int) ChallengeFunc {
	return func(_ context.Context, challenge []byte) ([]byte, error) {
		*calls++
		return a.answer(t, challenge), nil
	}
}

// answer reads a challenge, {"rsa_signature": {"nonce": b64} | null,
// "ecdsa_signature": {"nonce": b64} | null}, and signs SHA-256(server nonce ‖
// own nonce) with ECDSA (r and s big-endian) or RSA-PSS.
func (a testAgent) answer(t *testing.T, challenge []byte) []byte {
	t.Helper()
	var members map[string]*struct {
		Nonce string `json:"nonce"`
	}
	require.NoError(t, json.Unmarshal(challenge, &members))
	require.Len(t, members, 2, "both members, one of them null: %s", challenge)
	theirs := members["rsa_signature"]
	if theirs == nil {
		theirs = members["ecdsa_signature"]
	}
	require.NotNil(t, theirs, "no nonce in %s", challenge)
	serverNonce, err := base64.StdEncoding.DecodeString(theirs.Nonce)
	require.NoError(t, err)
	require.Len(t, serverNonce, 32)

	size := a.nonceSize
	if size == 0 {
		size = 32
	}
	own := make([]byte, size)
	_, _ = rand.Read(own)
	h := sha256.New()
	h.Write(serverNonce)
	h.Write(own)
	return a.sign(t, h.Sum(nil), own)
}

func (a testAgent) sign(t *testing.T, digest, nonce []byte) []byte {
	t.Helper()
	b64 := base64.StdEncoding.EncodeToString
	var doc map[string]any
	switch key := a.key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, key, digest)
		require.NoError(t, err)
		rb := r.Bytes()
		if a.corrupt {
			rb[0] ^= 1
		}
		doc = map[string]any{"rsa_signature": nil, "ecdsa_signature": map[string]string{
			"nonce": b64(nonce), "r": b64(rb), "s": b64(s.Bytes()),
		}}
	case *rsa.PrivateKey:
		sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest, nil)
		require.NoError(t, err)
		if a.corrupt {
			sig[len(sig)/2] ^= 1
		}
		doc = map[string]any{"ecdsa_signature": nil, "rsa_signature": map[string]string{
			"nonce": b64(nonce), "signature": b64(sig),
		}}
	default:
		t.Fatalf("test agent cannot sign with %T", key)
	}
	out, err := json.Marshal(doc)
	require.NoError(t, err)
	return out
}
