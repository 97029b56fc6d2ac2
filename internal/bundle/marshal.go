// Package bundle encodes and decodes SPIFFE bundles (the JWK Set of the
// SPIFFE Trust Domain and Bundle standard, section 4). Marshal is
// deterministic, so the same bundle always yields the same bytes; Parse is
// liberal where the standard allows it and precise about what is wrong
// where it does not.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
)

// Key uses defined by the SPIFFE Trust Domain and Bundle standard, 4.2.1.
const (
	UseX509SVID = "x509-svid"
	UseJWTSVID  = "jwt-svid"
)

// document is the wire form. Field order is fixed so output is stable.
type document struct {
	Keys        []json.RawMessage `json:"keys"`
	RefreshHint *int64            `json:"spiffe_refresh_hint,omitempty"`
	Sequence    *uint64           `json:"spiffe_sequence,omitempty"`
}

// Marshal encodes b as a SPIFFE bundle: X.509 authorities in the bundle's
// order, then JWT authorities sorted by key ID, then the refresh hint (in
// whole seconds) and the sequence number. The same bundle always yields the
// same bytes.
func Marshal(b *spiffebundle.Bundle) ([]byte, error) {
	doc := document{Keys: []json.RawMessage{}}
	for i, cert := range b.X509Authorities() {
		key := jose.JSONWebKey{Key: cert.PublicKey, Use: UseX509SVID, Certificates: []*x509.Certificate{cert}}
		raw, err := json.Marshal(key)
		if err != nil {
			return nil, fmt.Errorf("encode x509 authority %d: %w", i, err)
		}
		doc.Keys = append(doc.Keys, raw)
	}
	jwtKeys := b.JWTAuthorities()
	kids := make([]string, 0, len(jwtKeys))
	for kid := range jwtKeys {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	for _, kid := range kids {
		raw, err := json.Marshal(jose.JSONWebKey{Key: jwtKeys[kid], KeyID: kid, Use: UseJWTSVID})
		if err != nil {
			return nil, fmt.Errorf("encode jwt authority %q: %w", kid, err)
		}
		doc.Keys = append(doc.Keys, raw)
	}
	if hint, ok := b.RefreshHint(); ok {
		secs := int64(hint / time.Second)
		doc.RefreshHint = &secs
	}
	if seq, ok := b.SequenceNumber(); ok {
		doc.Sequence = &seq
	}
	return json.Marshal(doc)
}

// MarshalIndent is Marshal with two-space indentation, for people.
func MarshalIndent(b *spiffebundle.Bundle) ([]byte, error) {
	raw, err := Marshal(b)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "    "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Fingerprint returns the hex SHA-256 of b's keys as Marshal encodes them,
// ignoring the refresh hint and sequence, so two bundles with the same
// authorities have the same fingerprint.
func Fingerprint(b *spiffebundle.Bundle) (string, error) {
	keysOnly := spiffebundle.New(b.TrustDomain())
	keysOnly.SetX509Authorities(b.X509Authorities())
	keysOnly.SetJWTAuthorities(b.JWTAuthorities())
	raw, err := Marshal(keysOnly)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}
