package signedbundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
)

// Errors callers tell apart. Every error Parse, Verify and Accept return says
// why in words.
var (
	// ErrUntrusted means no signature was made by a JWT authority of the
	// bundle it was verified against (a forged or tampered file, or one
	// signed by keys the holder never had).
	ErrUntrusted = errors.New("not signed by a JWT authority of the bundle held")
	// ErrRollback means the file's sequence is lower than the bundle held:
	// an older file replayed or a repository rolled back.
	ErrRollback = errors.New("older than the bundle held")
	// ErrNoAnchor means there is nothing to verify a first file with: no
	// bundle held for its trust domain and no pinned fingerprint.
	ErrNoAnchor = errors.New("no bundle held to verify with")
)

// Signed is a signed bundle file whose structure and headers are sound; its
// signatures are checked by Verify or Accept.
type Signed struct {
	TrustDomain spiffeid.TrustDomain
	Sequence    uint64
	// Document is the bundle document, the bytes signed.
	Document []byte
	// Bundle is Document parsed for TrustDomain.
	Bundle *spiffebundle.Bundle
	// Warnings are what parsing Document found odd.
	Warnings []string
	// KeyIDs name the key each signature says it was made with.
	KeyIDs []string

	jws *jose.JSONWebSignature
}

// Parse reads a signed bundle file. It refuses a file that is not one (a
// plain bundle, a JWT), whose signatures disagree about the trust domain or
// sequence, or whose document's spiffe_sequence is not the one signed.
func Parse(raw []byte) (*Signed, error) {
	if len(raw) > MaxFileBytes {
		return nil, fmt.Errorf("the file is %d bytes, over the limit of %d", len(raw), MaxFileBytes)
	}
	f, err := decodeFile(raw)
	if err != nil {
		return nil, err
	}
	s := &Signed{Document: f.Bundle}
	if err := s.readHeaders(f.Signatures); err != nil {
		return nil, err
	}
	if err := s.readDocument(); err != nil {
		return nil, err
	}
	if s.jws, err = parseJWS(f.Signatures); err != nil {
		return nil, err
	}
	return s, nil
}

// IsSigned reports whether data looks like a signed bundle file (a JSON
// object with "spiffe_bundle" and "signatures"), so that a place that takes
// either a bundle or a signed one knows which to parse it as.
func IsSigned(data []byte) bool {
	var probe struct {
		Bundle     json.RawMessage `json:"spiffe_bundle"`
		Signatures json.RawMessage `json:"signatures"`
	}
	return json.Unmarshal(data, &probe) == nil && len(probe.Bundle) > 0 && len(probe.Signatures) > 0
}

// decodeFile decodes the file's JSON and checks it has both members.
func decodeFile(raw []byte) (file, error) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("not a signed bundle (want {\"spiffe_bundle\": …, \"signatures\": […]}): %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return f, errors.New("not a signed bundle: more follows the JSON object")
	}
	switch {
	case len(f.Bundle) == 0:
		return f, errors.New("not a signed bundle: no \"spiffe_bundle\" member (treaty bundle show -format spiffe -sign writes one)")
	case len(f.Signatures) == 0:
		return f, errors.New("the signed bundle has no signatures")
	case len(f.Signatures) > maxSignatures:
		return f, fmt.Errorf("the signed bundle has %d signatures, over the limit of %d", len(f.Signatures), maxSignatures)
	}
	return f, nil
}

// readHeaders checks every signature's protected header and takes the trust
// domain and sequence they all name.
func (s *Signed) readHeaders(sigs []signature) error {
	var first header
	for i, sig := range sigs {
		h, err := checkSignature(sig)
		if err != nil {
			return fmt.Errorf("signature %d: %w", i, err)
		}
		if i == 0 {
			first = h
		} else if h.TrustDomain != first.TrustDomain || *h.Sequence != *first.Sequence {
			return fmt.Errorf("signature %d names %s sequence %d, signature 0 %s sequence %d", i, h.TrustDomain, *h.Sequence, first.TrustDomain, *first.Sequence)
		}
		s.KeyIDs = append(s.KeyIDs, h.KeyID)
	}
	td, err := spiffeid.TrustDomainFromString(first.TrustDomain)
	if err != nil {
		return fmt.Errorf("protected header %s %q: %w", HeaderTrustDomain, first.TrustDomain, err)
	}
	s.TrustDomain, s.Sequence = td, *first.Sequence
	return nil
}

// checkSignature decodes a signature's protected header and checks that it
// is a signed bundle's: everything protected, typ Type, an unencoded payload
// and nothing else critical, a key ID, the trust domain and the sequence.
func checkSignature(sig signature) (header, error) {
	if len(sig.Header) > 0 && string(sig.Header) != "null" {
		return header{}, errors.New("has an unprotected header; a signed bundle's headers are all protected")
	}
	h, err := decodeHeader(sig.Protected)
	if err != nil {
		return h, err
	}
	if err := checkType(h.Type); err != nil {
		return h, err
	}
	for _, name := range h.Critical {
		if name != "b64" {
			return h, fmt.Errorf("critical header parameter %q is not understood (RFC 7515 §4.1.11)", name)
		}
	}
	switch {
	case h.Base64 == nil || *h.Base64 || !slices.Contains(h.Critical, "b64"):
		return h, errors.New(`the payload must be unencoded ("b64": false, listed in "crit"; RFC 7797)`)
	case h.KeyID == "":
		return h, errors.New(`no "kid": a signed bundle names the JWT authority that signed it`)
	case h.TrustDomain == "":
		return h, fmt.Errorf("no %q protected header", HeaderTrustDomain)
	case h.Sequence == nil:
		return h, fmt.Errorf("no %q protected header", HeaderSequence)
	}
	return h, nil
}

// checkType refuses anything but a signed bundle's typ, a JWT's by name.
func checkType(typ string) error {
	switch typ {
	case Type:
		return nil
	case "", "JWT", "JOSE":
		return fmt.Errorf("typ %q is a JWT's (a JWT-SVID?), not a signed bundle's (%q)", typ, Type)
	}
	return fmt.Errorf("typ %q is not a signed bundle's (%q)", typ, Type)
}

// readDocument parses the signed document and checks that its sequence is
// the one signed.
func (s *Signed) readDocument() error {
	res, err := bundle.Parse(s.TrustDomain, s.Document, bundle.Options{})
	if err != nil {
		return fmt.Errorf("spiffe_bundle: %w", err)
	}
	seq, ok := res.Bundle.SequenceNumber()
	if !ok {
		return errors.New("spiffe_bundle has no spiffe_sequence; a signed bundle needs one to refuse older files")
	}
	if seq != s.Sequence {
		return fmt.Errorf("spiffe_bundle has spiffe_sequence %d, the signatures name %d", seq, s.Sequence)
	}
	s.Bundle, s.Warnings = res.Bundle, res.Warnings
	return nil
}

// parseJWS hands the signatures to go-jose, with an empty payload standing
// in for the detached one.
func parseJWS(sigs []signature) (*jose.JSONWebSignature, error) {
	raw, err := json.Marshal(struct {
		Payload    string      `json:"payload"`
		Signatures []signature `json:"signatures"`
	}{Signatures: sigs})
	if err != nil {
		return nil, fmt.Errorf("signatures: %w", err)
	}
	jws, err := jose.ParseSignedJSON(string(raw), algorithms)
	if err != nil {
		return nil, fmt.Errorf("signatures: %w", err)
	}
	return jws, nil
}

// Verify checks that a signature over the document was made by a JWT
// authority of trusted, the bundle held for the file's trust domain, and
// returns that authority's key ID.
func (s *Signed) Verify(trusted *spiffebundle.Bundle) (string, error) {
	if trusted.TrustDomain() != s.TrustDomain {
		return "", fmt.Errorf("the file is for %s, the bundle to verify it with for %s", s.TrustDomain.Name(), trusted.TrustDomain().Name())
	}
	set := jose.JSONWebKeySet{}
	for kid, pub := range trusted.JWTAuthorities() {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: kid})
	}
	i, _, err := s.jws.DetachedVerifyMulti(s.Document, set)
	if err != nil {
		return "", fmt.Errorf("%w for %s (signed by %s; held: %s)", ErrUntrusted, s.TrustDomain.Name(),
			strings.Join(s.KeyIDs, ", "), strings.Join(keyIDs(trusted), ", "))
	}
	return s.KeyIDs[i], nil
}

// keyIDs lists a bundle's JWT authority key IDs in order.
func keyIDs(b *spiffebundle.Bundle) []string {
	var ids []string
	for kid := range b.JWTAuthorities() {
		ids = append(ids, kid)
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return []string{"no JWT authority"}
	}
	return ids
}
