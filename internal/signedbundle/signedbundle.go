// Package signedbundle signs a trust domain's SPIFFE bundle and verifies a
// signed one, so that partners who never reach each other's bundle endpoint
// (static federation, devices, air-gapped sites, bundles kept in a git
// repository) can still take each rotation without copying a bundle by hand.
//
// A signed bundle is one JSON file: the bundle document exactly as the bundle
// endpoint serves it, under "spiffe_bundle", and a JWS (RFC 7515) over those
// bytes with a detached, unencoded payload (RFC 7515 Appendix F and RFC 7797
// §5.2, "b64": false), in the general JSON serialization (RFC 7515 §7.2.1),
// under "signatures". Each signature is made by one of the trust domain's JWT
// authorities and names, in its protected header, the trust domain and the
// bundle's spiffe_sequence. A holder of an earlier bundle verifies a later one
// with the keys it already holds, so trust passes from bundle to bundle.
//
// A signed bundle can never be taken for a JWT-SVID, nor a JWT-SVID for a
// signed bundle: its "typ" is Type, not JWT (go-spiffe refuses any other);
// "b64": false is listed in "crit", so a JOSE library without RFC 7797 must
// refuse it (RFC 7515 §4.1.11); its payload has no "sub", "aud" or "exp".
// Verify refuses a JWS whose typ is not Type, whose payload is encoded, or
// that does not name the trust domain and sequence.
package signedbundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
)

// Type is the "typ" header of a signed bundle's signatures (RFC 7515
// §4.1.9). A JWT-SVID's is "JWT" or "JOSE".
const Type = "treaty-bundle+jws"

// Private protected header parameters (RFC 7515 §4.3) naming what was signed.
const (
	// HeaderTrustDomain is the trust domain name, e.g. "alpha.test".
	HeaderTrustDomain = "spiffe_trust_domain"
	// HeaderSequence is the bundle's spiffe_sequence, a JSON number.
	HeaderSequence = "spiffe_sequence"
)

// MaxFileBytes is the largest signed bundle file read: a bundle document of
// bundle.MaxDocumentBytes and room for its signatures.
const MaxFileBytes = bundle.MaxDocumentBytes + 64<<10

// maxSignatures is the most signatures a file may carry: one per JWT
// authority a trust domain publishes, with room to spare.
const maxSignatures = 16

// algorithms are the JWS algorithms a JWT authority signs with.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.PS256}

// Key is a JWT authority's private key and its key ID ("kid") as published in
// the bundle.
type Key struct {
	ID     string
	Signer crypto.Signer
}

// file is the wire form of a signed bundle.
type file struct {
	Bundle     json.RawMessage `json:"spiffe_bundle"`
	Signatures []signature     `json:"signatures"`
}

// signature is one member of "signatures" (RFC 7515 §7.2.1).
type signature struct {
	Protected string          `json:"protected"`
	Header    json.RawMessage `json:"header,omitempty"`
	Signature string          `json:"signature"`
}

// header is the protected header of a signature.
type header struct {
	Algorithm   string   `json:"alg"`
	KeyID       string   `json:"kid"`
	Type        string   `json:"typ"`
	Critical    []string `json:"crit"`
	Base64      *bool    `json:"b64"`
	TrustDomain string   `json:"spiffe_trust_domain"`
	Sequence    *uint64  `json:"spiffe_sequence"`
}

// Sign returns the signed bundle file for doc, a bundle document of td with
// spiffe_sequence seq, with one signature per key. doc is signed byte for
// byte as given; it must be compact JSON (bundle.Marshal's output).
func Sign(doc []byte, td spiffeid.TrustDomain, seq uint64, keys []Key) ([]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("sign bundle: no JWT authority to sign with")
	}
	if !json.Valid(doc) || len(bytes.TrimSpace(doc)) != len(doc) {
		return nil, errors.New("sign bundle: the document is not compact JSON")
	}
	f := file{Bundle: doc}
	for _, k := range keys {
		sig, err := signOne(doc, td, seq, k)
		if err != nil {
			return nil, err
		}
		f.Signatures = append(f.Signatures, sig)
	}
	return encode(f)
}

// signOne signs doc with one key.
func signOne(doc []byte, td spiffeid.TrustDomain, seq uint64, k Key) (signature, error) {
	alg, err := Algorithm(k.Signer.Public())
	if err != nil {
		return signature{}, fmt.Errorf("sign bundle with %q: %w", k.ID, err)
	}
	opts := (&jose.SignerOptions{}).WithType(Type).WithBase64(false).
		WithHeader(jose.HeaderKey("kid"), k.ID).
		WithHeader(HeaderTrustDomain, td.Name()).
		WithHeader(HeaderSequence, seq)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k.Signer}, opts)
	if err != nil {
		return signature{}, fmt.Errorf("sign bundle with %q: %w", k.ID, err)
	}
	jws, err := signer.Sign(doc)
	if err != nil {
		return signature{}, fmt.Errorf("sign bundle with %q: %w", k.ID, err)
	}
	var flat signature
	if err := json.Unmarshal([]byte(jws.FullSerialize()), &flat); err != nil {
		return signature{}, fmt.Errorf("sign bundle with %q: %w", k.ID, err)
	}
	return signature{Protected: flat.Protected, Signature: flat.Signature}, nil
}

// encode writes f with the bundle document's bytes as they are.
func encode(f file) ([]byte, error) {
	var out bytes.Buffer
	out.WriteString("{\n  \"spiffe_bundle\": ")
	out.Write(f.Bundle)
	out.WriteString(",\n  \"signatures\": [")
	for i, s := range f.Signatures {
		raw, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encode signed bundle: %w", err)
		}
		if i > 0 {
			out.WriteByte(',')
		}
		out.WriteString("\n    ")
		out.Write(raw)
	}
	out.WriteString("\n  ]\n}\n")
	return out.Bytes(), nil
}

// Algorithm returns the JWS algorithm a JWT authority's key signs with: the
// one its curve or type implies (RFC 7518 §3.1).
func Algorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
		return "", fmt.Errorf("unsupported curve %s", pub.Curve.Params().Name)
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// decodeHeader decodes a protected header.
func decodeHeader(protected string) (header, error) {
	raw, err := base64.RawURLEncoding.DecodeString(protected)
	if err != nil {
		return header{}, fmt.Errorf("protected header is not base64url: %w", err)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return header{}, fmt.Errorf("protected header is not a JSON object: %w", err)
	}
	return h, nil
}
