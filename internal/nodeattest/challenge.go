package nodeattest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
)

// nonceSize is the length of both nonces of the x509pop exchange, ours and
// the agent's.
const nonceSize = 32

// The x509pop wire format, as spire-agent v1.15.3 reads and writes it
// (SPIRE's pkg/common/plugin/x509pop). Byte strings are standard base64, as
// encoding/json writes []byte; member names are matched without regard to
// case and unknown members are ignored, as spire-server reads them.
type (
	// attestationData is the agent's payload.
	attestationData struct {
		Certificates [][]byte `json:"certificates"` // DER, leaf first
	}

	// challenge is what we send: exactly one member set, by the leaf's key
	// type, the other null.
	challenge struct {
		RSA   *challengeNonce `json:"rsa_signature"`
		ECDSA *challengeNonce `json:"ecdsa_signature"`
	}
	challengeNonce struct {
		Nonce []byte `json:"nonce"`
	}

	// response is the agent's answer: its own nonce and its signature over
	// SHA-256(our nonce ‖ its nonce), under the member of the key type.
	response struct {
		RSA   *rsaResponse   `json:"rsa_signature"`
		ECDSA *ecdsaResponse `json:"ecdsa_signature"`
	}
	rsaResponse struct {
		Nonce     []byte `json:"nonce"`
		Signature []byte `json:"signature"` // RSASSA-PSS, SHA-256
	}
	ecdsaResponse struct {
		Nonce []byte `json:"nonce"`
		R     []byte `json:"r"` // big-endian
		S     []byte `json:"s"` // big-endian
	}
)

// prove challenges the agent to sign with the leaf's key and verifies its
// answer. checkLeaf has made sure the key is RSA or ECDSA.
func prove(ctx context.Context, leaf *x509.Certificate, send ChallengeFunc) error {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("x509pop nonce: %w", err)
	}
	msg, err := json.Marshal(newChallenge(leaf.PublicKeyAlgorithm, nonce))
	if err != nil {
		return fmt.Errorf("encode x509pop challenge: %w", err)
	}
	answer, err := send(ctx, msg)
	if err != nil {
		return fmt.Errorf("x509pop challenge: %w", err)
	}
	resp, err := parseResponse(answer)
	if err != nil {
		return err
	}
	return verifyResponse(leaf.PublicKey, nonce, resp)
}

// newChallenge is the challenge for a leaf key of algorithm alg.
func newChallenge(alg x509.PublicKeyAlgorithm, nonce []byte) challenge {
	if alg == x509.RSA {
		return challenge{RSA: &challengeNonce{Nonce: nonce}}
	}
	return challenge{ECDSA: &challengeNonce{Nonce: nonce}}
}

// parseResponse reads the agent's challenge response.
func parseResponse(data []byte) (*response, error) {
	var r response
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, malformed("x509pop challenge response is not the JSON spire-agent sends", err,
			"check that the agent runs the x509pop attestor of spire-agent v1.15 or a compatible one")
	}
	return &r, nil
}

// verifyResponse checks the agent's signature over our nonce and its own
// with the leaf's public key.
func verifyResponse(pub crypto.PublicKey, nonce []byte, r *response) error {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		return verifyECDSA(pub, nonce, r.ECDSA)
	case *rsa.PublicKey:
		return verifyRSA(pub, nonce, r.RSA)
	default:
		return fmt.Errorf("nodeattest: x509pop cannot verify a %T key", pub)
	}
}

func verifyECDSA(pub *ecdsa.PublicKey, nonce []byte, r *ecdsaResponse) error {
	if r == nil {
		return responseFailed("the response has no ECDSA signature for the certificate's ECDSA key", fixKey)
	}
	digest, err := combine(nonce, r.Nonce)
	if err != nil {
		return err
	}
	if !ecdsa.Verify(pub, digest, new(big.Int).SetBytes(r.R), new(big.Int).SetBytes(r.S)) {
		return responseFailed("the ECDSA signature does not verify with the certificate's key", fixKey)
	}
	return nil
}

func verifyRSA(pub *rsa.PublicKey, nonce []byte, r *rsaResponse) error {
	if r == nil {
		return responseFailed("the response has no RSA signature for the certificate's RSA key", fixKey)
	}
	digest, err := combine(nonce, r.Nonce)
	if err != nil {
		return err
	}
	// nil options: the salt length is found from the signature, as the
	// agent signs with the longest salt the key allows.
	if rsa.VerifyPSS(pub, crypto.SHA256, digest, r.Signature, nil) != nil {
		return responseFailed("the RSA signature does not verify with the certificate's key", fixKey)
	}
	return nil
}

// combine is what the agent signs: SHA-256 of our nonce followed by its own.
func combine(ours, theirs []byte) ([]byte, error) {
	if len(ours) != nonceSize {
		return nil, fmt.Errorf("nodeattest: x509pop challenge nonce is %d bytes, not %d", len(ours), nonceSize)
	}
	if len(theirs) != nonceSize {
		return nil, responseFailed(fmt.Sprintf("the agent's nonce is %d bytes, not %d", len(theirs), nonceSize), fixClient)
	}
	h := sha256.New()
	h.Write(ours)
	h.Write(theirs)
	return h.Sum(nil), nil
}

// What to do about a challenge response that fails.
const (
	fixKey    = "the agent's private_key_path must hold the key of the certificate in its certificate_path"
	fixClient = "the agent must answer as spire-agent's x509pop attestor does (32-byte nonces)"
)

// responseFailed refuses a challenge response that does not prove
// possession of the leaf's key.
func responseFailed(why, fix string) error {
	return denied("challenge response verification failed: "+why, nil, fix)
}
