package bundle

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/treatyhq/treaty/internal/finding"
)

// Ignored is a bundle entry that Parse left out of the bundle, and why.
type Ignored struct {
	// Index is the element's position in "keys", from 0, or the PEM
	// block's number, from 1.
	Index int `json:"index"`
	// Use and KeyID are the entry's "use" and "kid" as written, if any.
	Use   string `json:"use,omitempty"`
	KeyID string `json:"kid,omitempty"`
	// Check classifies the reason with a stable ID; metrics count ignored
	// entries by it.
	Check finding.CheckID `json:"reason"`
	// Severity is finding.Warn for entries the standard tells clients to
	// skip (an unknown key type or use, a duplicate) and finding.Fail for
	// malformed ones.
	Severity finding.Severity `json:"severity"`
	// Message names the entry and says what is wrong with it.
	Message string `json:"message"`
}

// entry identifies the element being decoded, for messages.
type entry struct {
	index    int
	pemBlock bool
	use, kid string
}

func (e entry) where() string {
	switch {
	case e.pemBlock:
		return fmt.Sprintf("PEM block %d", e.index)
	case e.use != "" && e.kid != "":
		return fmt.Sprintf("keys[%d] (%s, kid %q)", e.index, e.use, e.kid)
	case e.use != "":
		return fmt.Sprintf("keys[%d] (%s)", e.index, e.use)
	}
	return fmt.Sprintf("keys[%d]", e.index)
}

// keyHeader holds the members Parse looks at in a JWK element.
type keyHeader struct {
	Use string            `json:"use"`
	Kty string            `json:"kty"`
	Kid string            `json:"kid"`
	X5c []json.RawMessage `json:"x5c"`
	// Public key members of EC, RSA and OKP keys (RFC 7518 §6, RFC 8037).
	Crv json.RawMessage `json:"crv"`
	X   json.RawMessage `json:"x"`
	Y   json.RawMessage `json:"y"`
	N   json.RawMessage `json:"n"`
	E   json.RawMessage `json:"e"`
	// Private key members of EC, RSA, OKP and symmetric keys.
	D  json.RawMessage `json:"d"`
	P  json.RawMessage `json:"p"`
	Q  json.RawMessage `json:"q"`
	DP json.RawMessage `json:"dp"`
	DQ json.RawMessage `json:"dq"`
	QI json.RawMessage `json:"qi"`
	K  json.RawMessage `json:"k"`
}

// privateMember names the first private key member of h, if any.
func (h *keyHeader) privateMember() string {
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{{"d", h.D}, {"p", h.P}, {"q", h.Q}, {"dp", h.DP}, {"dq", h.DQ}, {"qi", h.QI}} {
		if m.raw != nil {
			return m.name
		}
	}
	return ""
}

// publicKey decodes the key members alone, so that x5c, kid or anything
// else in the element cannot change which key they describe.
func (h *keyHeader) publicKey() (crypto.PublicKey, error) {
	members := struct {
		Kty string          `json:"kty"`
		Crv json.RawMessage `json:"crv,omitempty"`
		X   json.RawMessage `json:"x,omitempty"`
		Y   json.RawMessage `json:"y,omitempty"`
		N   json.RawMessage `json:"n,omitempty"`
		E   json.RawMessage `json:"e,omitempty"`
	}{h.Kty, h.Crv, h.X, h.Y, h.N, h.E}
	raw, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	return jwk.Key, nil
}

// key decodes element i of "keys" and adds it to the bundle or ignores it.
func (p *parser) key(i int, raw json.RawMessage) {
	var h keyHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		p.ignore(entry{index: i}, CheckKeys, finding.Fail, "not a JWK object: %v", err)
		return
	}
	e := entry{index: i, use: h.Use, kid: h.Kid}
	if !p.keyAllowed(e, &h) {
		return
	}
	switch h.Use {
	case UseX509SVID:
		p.x509Key(e, &h)
	case UseJWTSVID:
		p.jwtKey(e, &h)
	case "":
		p.ignore(e, CheckUse, finding.Fail, `no "use"; SPIFFE bundles need "x509-svid" or "jwt-svid" (SPIFFE Trust Domain and Bundle §4.2.2)`)
	default:
		p.ignore(e, CheckUse, finding.Warn, "unknown use %q (SPIFFE Trust Domain and Bundle §4.2.2)", h.Use)
	}
}

// keyAllowed ignores elements that hold secrets or whose key type is
// missing or unknown (SPIFFE Trust Domain and Bundle §4.2.1).
func (p *parser) keyAllowed(e entry, h *keyHeader) bool {
	if h.K != nil {
		p.ignore(e, CheckPrivateKey, finding.Fail, `a symmetric key ("k") is a shared secret and has no place in a bundle`)
		return false
	}
	if m := h.privateMember(); m != "" {
		p.ignore(e, CheckPrivateKey, finding.Fail, `contains private key material (%q); a bundle must hold public keys only, and this key must be considered compromised`, m)
		return false
	}
	switch h.Kty {
	case "EC", "RSA", "OKP":
		return true
	case "":
		p.ignore(e, CheckKeyType, finding.Fail, `no "kty" (SPIFFE Trust Domain and Bundle §4.2.1)`)
	default:
		p.ignore(e, CheckKeyType, finding.Warn, "unsupported key type %q (SPIFFE Trust Domain and Bundle §4.2.1)", h.Kty)
	}
	return false
}

// x509Key adds an x509-svid element's CA certificate: the first of x5c,
// the rest ignored (SPIFFE X509-SVID §6.2), standard base64 (RFC 7517
// §4.7), and matching the element's key members.
func (p *parser) x509Key(e entry, h *keyHeader) {
	if len(h.X5c) == 0 {
		p.ignore(e, CheckX5C, finding.Fail, `no certificate in "x5c" (SPIFFE X509-SVID §6.2)`)
		return
	}
	if h.Kid != "" {
		p.warn(CheckX5C, `%s: has a "kid", which x509-svid entries must not set (SPIFFE X509-SVID §6.1); kept`, e.where())
	}
	if len(h.X5c) > 1 {
		p.warn(CheckX5C, `%s: "x5c" holds %d certificates; the first is the authority and the rest are ignored (SPIFFE X509-SVID §6.2)`, e.where(), len(h.X5c))
	}
	cert, msg := decodeX5C(h.X5c[0])
	if msg != "" {
		p.ignore(e, CheckX5C, finding.Fail, "%s", msg)
		return
	}
	pub, err := h.publicKey()
	if err != nil {
		p.ignore(e, CheckKeyMatch, finding.Fail, "its key members do not decode: %s", joseError(err))
		return
	}
	if k, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(cert.PublicKey) {
		p.ignore(e, CheckKeyMatch, finding.Fail, "its key members are not the public key of the x5c certificate (RFC 7517 §4.7)")
		return
	}
	p.addX509(e, cert)
}

// decodeX5C decodes one x5c value, or says why it cannot.
func decodeX5C(raw json.RawMessage) (*x509.Certificate, string) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, "x5c[0] is not a string"
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if _, urlErr := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); urlErr == nil {
			return nil, "x5c[0] is base64url; x5c must be standard base64, with + and / (RFC 7517 §4.7)"
		}
		return nil, fmt.Sprintf("x5c[0] is not base64: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Sprintf("x5c[0] is not a DER X.509 certificate: %v", err)
	}
	return cert, ""
}

// addX509 adds cert to the bundle if it can be an authority.
func (p *parser) addX509(e entry, cert *x509.Certificate) {
	if err := checkPublicKey(cert); err != nil {
		p.ignore(e, CheckKeyType, finding.Fail, "%v", err)
		return
	}
	if err := CheckX509Authority(cert); err != nil {
		p.ignore(e, CheckCA, finding.Fail, "%v", err)
		return
	}
	p.checkValidity(e, cert)
	for _, existing := range p.bundle.X509Authorities() {
		if existing.Equal(cert) {
			p.ignore(e, CheckDuplicate, finding.Warn, "duplicate of an earlier certificate")
			return
		}
	}
	p.bundle.AddX509Authority(cert)
}

// checkValidity warns about an authority that cannot verify anything now
// or that names another trust domain. Neither is dropped: an expired
// authority stays harmlessly until its owner removes it, and the bundle
// belongs to the trust domain it was fetched for whatever its certificates
// say (SPIFFE Federation §5.1, Trust Domain and Bundle §3).
func (p *parser) checkValidity(e entry, cert *x509.Certificate) {
	if other, ok := ForeignTrustDomain(p.td, cert); ok {
		p.warn(CheckTrustDomain, "%s: certificate %q names trust domain %q in its URI SAN; it is kept as an authority of %q, the trust domain this bundle is for (is this the right partner's bundle?)",
			e.where(), cert.Subject, other.Name(), p.td.Name())
	}
	switch {
	case p.opts.Now.After(cert.NotAfter):
		p.warn(CheckExpiry, "%s: certificate %q expired at %s", e.where(), cert.Subject, cert.NotAfter.UTC().Format(timeLayout))
	case p.opts.Now.Before(cert.NotBefore):
		p.warn(CheckExpiry, "%s: certificate %q is not valid until %s", e.where(), cert.Subject, cert.NotBefore.UTC().Format(timeLayout))
	}
}

// jwtKey adds a jwt-svid element, which needs a key ID (SPIFFE JWT-SVID
// §6.1). A key ID that names two different keys is ambiguous: both are
// ignored, since a token naming it could be checked against either.
func (p *parser) jwtKey(e entry, h *keyHeader) {
	if h.Kid == "" {
		p.ignore(e, CheckJWTKID, finding.Fail, `no "kid"; JWT authorities need a key ID so that tokens can name them (SPIFFE JWT-SVID §6.1)`)
		return
	}
	pub, err := h.publicKey()
	if err != nil {
		p.ignore(e, CheckJWTKey, finding.Fail, "%s", joseError(err))
		return
	}
	if p.ambiguous[h.Kid] {
		p.ignore(e, CheckDuplicate, finding.Fail, "kid %q names more than one key", h.Kid)
		return
	}
	if first, ok := p.jwtEntries[h.Kid]; ok {
		p.duplicateKID(e, first, pub)
		return
	}
	if err := p.bundle.AddJWTAuthority(h.Kid, pub); err != nil {
		p.ignore(e, CheckJWTKey, finding.Fail, "%v", err)
		return
	}
	p.jwtEntries[h.Kid] = e
}

func (p *parser) duplicateKID(e, first entry, pub crypto.PublicKey) {
	held, _ := p.bundle.FindJWTAuthority(e.kid)
	if k, ok := held.(interface{ Equal(crypto.PublicKey) bool }); ok && k.Equal(pub) {
		p.ignore(e, CheckDuplicate, finding.Warn, "duplicate of %s", first.where())
		return
	}
	p.bundle.RemoveJWTAuthority(e.kid)
	p.ambiguous[e.kid] = true
	p.ignore(first, CheckDuplicate, finding.Fail, "kid %q also names a different key in %s; a token naming it could be checked against either, so neither is used", e.kid, e.where())
	p.ignore(e, CheckDuplicate, finding.Fail, "kid %q also names a different key in %s", e.kid, first.where())
}

// joseError turns go-jose's messages into something an operator can act on.
func joseError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")
	return "bad key: " + msg
}
