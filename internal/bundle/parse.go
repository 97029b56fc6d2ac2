package bundle

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxRefreshHint is the longest refresh hint Parse accepts without a
// warning: with a longer one a partner misses rotations.
const MaxRefreshHint = 24 * time.Hour

// Options tune Parse.
type Options struct {
	// RequireKeys makes an empty key set an error. The standard allows an
	// empty set (the trust domain revoked everything), but a bootstrap
	// bundle without keys can authenticate nothing.
	RequireKeys bool
	// Now is the time used to report expired authorities; zero means
	// time.Now().
	Now time.Time
}

// Result is a parsed bundle with the warnings about what Parse skipped or
// found odd.
type Result struct {
	Bundle   *spiffebundle.Bundle
	Warnings []string
}

// Error lists every problem that made a document unusable.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "invalid bundle: " + e.Problems[0]
	}
	return fmt.Sprintf("invalid bundle, %d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// parser collects problems and warnings while decoding one document.
type parser struct {
	td       spiffeid.TrustDomain
	opts     Options
	problems []string
	warnings []string
	findings []Finding
	bundle   *spiffebundle.Bundle
}

func (p *parser) problem(check CheckID, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.problems = append(p.problems, msg)
	p.findings = append(p.findings, Finding{Check: check, Severity: SeverityFail, Message: msg})
}

func (p *parser) warn(check CheckID, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.warnings = append(p.warnings, msg)
	p.findings = append(p.findings, Finding{Check: check, Severity: SeverityWarn, Message: msg})
}

func (p *parser) result() (*Result, error) {
	if len(p.problems) > 0 {
		return nil, &Error{Problems: p.problems}
	}
	return &Result{Bundle: p.bundle, Warnings: p.warnings}, nil
}

// Parse decodes a SPIFFE bundle for trust domain td. Unknown members and
// keys with an unknown use or key type are skipped with a warning, as the
// SPIFFE Trust Domain and Bundle standard (section 4) requires of clients;
// anything that makes a key unusable or unsafe is a problem, and all
// problems are reported together in an *Error.
func Parse(td spiffeid.TrustDomain, data []byte, opts Options) (*Result, error) {
	p := newParser(td, opts)
	p.parseJSON(data)
	return p.result()
}

func newParser(td spiffeid.TrustDomain, opts Options) *parser {
	p := &parser{td: td, opts: opts, bundle: spiffebundle.New(td)}
	if p.opts.Now.IsZero() {
		p.opts.Now = time.Now()
	}
	return p
}

func (p *parser) parseJSON(data []byte) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		p.problem(CheckFormat, "not a JSON object: %s%s", jsonError(data, err), htmlHint(data))
		return
	}
	p.topLevel(members)
}

func (p *parser) topLevel(members map[string]json.RawMessage) {
	for name := range members {
		switch name {
		case "keys", "spiffe_refresh_hint", "spiffe_sequence":
		case "spiffe_sequence_number":
			p.warn(CheckSequence, `member "spiffe_sequence_number" is not part of the standard and is ignored; the sequence member is "spiffe_sequence"`)
		default:
			p.warn(CheckMembers, "unknown member %q ignored", name)
		}
	}
	p.refreshHint(members["spiffe_refresh_hint"])
	p.sequence(members["spiffe_sequence"])
	raw, ok := members["keys"]
	if !ok {
		p.problem(CheckKeys, `no "keys" member: a SPIFFE bundle is a JWK Set, {"keys": [...]}`)
		return
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil || keys == nil {
		p.problem(CheckKeys, `"keys" must be an array of JWKs`)
		return
	}
	for i, key := range keys {
		p.key(i, key)
	}
	if p.opts.RequireKeys && p.bundle.Empty() && len(p.problems) == 0 {
		p.problem(CheckKeys, "the bundle has no usable keys: it needs at least one x509-svid or jwt-svid authority")
	}
}

func (p *parser) refreshHint(raw json.RawMessage) {
	if raw == nil {
		return
	}
	var secs int64
	if err := json.Unmarshal(raw, &secs); err != nil || secs < 0 {
		p.warn(CheckRefreshHint, "spiffe_refresh_hint %s is not a non-negative whole number of seconds; ignored", raw)
		return
	}
	hint := time.Duration(secs) * time.Second
	switch {
	case hint > MaxRefreshHint && looksLikeMilliseconds(secs):
		p.warn(CheckRefreshHint, "spiffe_refresh_hint is %d: that is %s in seconds, which the standard uses, but looks like milliseconds (%s); partners will poll far too rarely", secs, hint, time.Duration(secs)*time.Millisecond)
	case hint > MaxRefreshHint:
		p.warn(CheckRefreshHint, "spiffe_refresh_hint is %s (%d seconds): partners polling that rarely will miss CA rotations; was it meant to be minutes?", hint, secs)
	}
	p.bundle.SetRefreshHint(hint)
}

// looksLikeMilliseconds reports whether a refresh hint is more plausibly
// milliseconds: a whole number of minutes when read as milliseconds, but
// not a whole number of hours when read as seconds.
func looksLikeMilliseconds(secs int64) bool {
	ms := time.Duration(secs) * time.Millisecond
	return ms <= MaxRefreshHint && ms%time.Minute == 0 && (time.Duration(secs)*time.Second)%time.Hour != 0
}

func (p *parser) sequence(raw json.RawMessage) {
	if raw == nil {
		return
	}
	var seq uint64
	if err := json.Unmarshal(raw, &seq); err != nil {
		p.warn(CheckSequence, "spiffe_sequence %s is not a non-negative whole number; ignored", raw)
		return
	}
	p.bundle.SetSequenceNumber(seq)
}

// keyHeader holds the members Parse looks at before handing a key to jose.
type keyHeader struct {
	Use string            `json:"use"`
	Kty string            `json:"kty"`
	Kid string            `json:"kid"`
	X5c []json.RawMessage `json:"x5c"`
	// Private key members of EC, RSA, OKP and symmetric JWKs (RFC 7518).
	D  json.RawMessage `json:"d"`
	P  json.RawMessage `json:"p"`
	Q  json.RawMessage `json:"q"`
	DP json.RawMessage `json:"dp"`
	DQ json.RawMessage `json:"dq"`
	QI json.RawMessage `json:"qi"`
	K  json.RawMessage `json:"k"`
}

// privateMember names the first private key member of h, if any.
func (h keyHeader) privateMember() string {
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

func (p *parser) key(i int, raw json.RawMessage) {
	where := fmt.Sprintf("keys[%d]", i)
	var h keyHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		p.problem(CheckKeys, "%s: not a JWK object: %v", where, err)
		return
	}
	if h.K != nil {
		p.warn(CheckPrivateKey, `%s: a symmetric key ("k") is a shared secret and has no place in a bundle; key skipped`, where)
		return
	}
	if m := h.privateMember(); m != "" {
		p.problem(CheckPrivateKey, `%s: contains private key material (%q); a bundle must hold public keys only, and this private key should be considered compromised`, where, m)
		return
	}
	switch h.Kty {
	case "EC", "RSA", "OKP":
	case "":
		p.warn(CheckKeyType, `%s: no "kty"; key skipped`, where)
		return
	default:
		p.warn(CheckKeyType, "%s: unsupported key type %q; key skipped", where, h.Kty)
		return
	}
	switch h.Use {
	case UseX509SVID:
		p.x509Key(where, raw, h)
	case UseJWTSVID:
		p.jwtKey(where, raw, h)
	case "":
		p.warn(CheckUse, `%s: no "use"; SPIFFE bundles need "x509-svid" or "jwt-svid"; key skipped`, where)
	default:
		p.warn(CheckUse, "%s: unknown use %q; key skipped", where, h.Use)
	}
}

func (p *parser) x509Key(where string, raw json.RawMessage, h keyHeader) {
	if len(h.X5c) != 1 {
		p.problem(CheckX5C, `%s (x509-svid): "x5c" must hold exactly one certificate, found %d`, where, len(h.X5c))
		return
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		p.problem(CheckX5C, "%s (x509-svid): %s", where, joseError(err))
		return
	}
	cert := jwk.Certificates[0]
	if check, msg := p.checkAuthority(cert); msg != "" {
		p.problem(check, "%s (x509-svid): x5c[0] %s", where, msg)
		return
	}
	for _, existing := range p.bundle.X509Authorities() {
		if existing.Equal(cert) {
			p.warn(CheckDuplicate, "%s (x509-svid): duplicate of an earlier certificate; skipped", where)
			return
		}
	}
	p.bundle.AddX509Authority(cert)
}

func (p *parser) jwtKey(where string, raw json.RawMessage, h keyHeader) {
	if h.Kid == "" {
		p.problem(CheckJWTKID, `%s (jwt-svid): no "kid"; JWT authorities need a key ID so that tokens can name them`, where)
		return
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		p.problem(CheckJWTKey, "%s (jwt-svid, kid %q): %s", where, h.Kid, joseError(err))
		return
	}
	if p.bundle.HasJWTAuthority(h.Kid) {
		p.problem(CheckDuplicate, "%s (jwt-svid): duplicate kid %q; key IDs must be unique within a bundle", where, h.Kid)
		return
	}
	if err := p.bundle.AddJWTAuthority(h.Kid, jwk.Key); err != nil {
		p.problem(CheckJWTKey, "%s (jwt-svid, kid %q): %v", where, h.Kid, err)
	}
}

// checkAuthority returns why cert cannot be an X.509 authority of the trust
// domain, or "" if it can. An expired certificate is only a warning: it
// stays harmlessly in the bundle until its owner removes it.
func (p *parser) checkAuthority(cert *x509.Certificate) (CheckID, string) {
	if err := CheckX509Authority(p.td, cert); err != nil {
		if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 && cert.KeyUsage != 0 {
			return CheckCA, err.Error()
		}
		return CheckTrustDomain, err.Error()
	}
	if p.opts.Now.After(cert.NotAfter) {
		p.warn(CheckExpiry, "certificate %q expired at %s", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return "", ""
}

// CheckX509Authority returns an error saying why cert cannot be an X.509
// authority of trust domain td: it must be a CA certificate (SPIFFE X509-SVID
// standard, section 4.1), and a SPIFFE ID in its URI SAN, if any, must be in
// td.
func CheckX509Authority(td spiffeid.TrustDomain, cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("(subject %q) is not a CA certificate (basic constraints CA:TRUE missing); an x509-svid authority must be a CA", cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("(subject %q) is a CA whose key usage lacks keyCertSign, so it may not sign SVIDs (SPIFFE X509-SVID standard, section 4.3)", cert.Subject)
	}
	for _, uri := range cert.URIs {
		id, err := spiffeid.FromURI(uri)
		if err == nil && id.TrustDomain() != td {
			return fmt.Errorf("(subject %q) belongs to trust domain %q (URI SAN %s), not %q: is this the right partner's bundle?", cert.Subject, id.TrustDomain().Name(), uri, td.Name())
		}
	}
	return nil
}

// ParsePEM decodes PEM certificates as the X.509 authorities of trust
// domain td. Every certificate must be a CA; private keys are refused.
func ParsePEM(td spiffeid.TrustDomain, data []byte, opts Options) (*Result, error) {
	p := newParser(td, opts)
	p.parsePEM(data)
	return p.result()
}

func (p *parser) parsePEM(data []byte) {
	rest, n := data, 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		p.pemBlock(n, block)
	}
	if n == 0 {
		p.problem(CheckFormat, "no PEM block found: expected one or more -----BEGIN CERTIFICATE----- blocks%s", jsonHint(data))
	} else if p.bundle.Empty() && len(p.problems) == 0 {
		p.problem(CheckFormat, "no CERTIFICATE block found among %d PEM blocks", n)
	}
}

func (p *parser) pemBlock(n int, block *pem.Block) {
	where := fmt.Sprintf("PEM block %d", n)
	switch {
	case strings.Contains(block.Type, "PRIVATE KEY"):
		p.problem(CheckPrivateKey, "%s is a %s: a bundle must hold public certificates only, and this private key should be considered compromised", where, block.Type)
	case block.Type != "CERTIFICATE":
		p.warn(CheckFormat, "%s (%s) skipped: only CERTIFICATE blocks are used", where, block.Type)
	default:
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			p.problem(CheckX5C, "%s: not a valid X.509 certificate: %v", where, err)
			return
		}
		if check, msg := p.checkAuthority(cert); msg != "" {
			p.problem(check, "%s %s", where, msg)
			return
		}
		p.bundle.AddX509Authority(cert)
	}
}

func jsonError(data []byte, err error) string {
	if syntax, ok := errors.AsType[*json.SyntaxError](err); ok {
		line := 1 + bytes.Count(data[:min(int(syntax.Offset), len(data))], []byte("\n"))
		return fmt.Sprintf("%v (line %d)", err, line)
	}
	return err.Error()
}

func htmlHint(data []byte) string {
	trimmed := strings.ToLower(strings.TrimSpace(string(data[:min(len(data), 512)])))
	switch {
	case strings.HasPrefix(trimmed, "<!doctype html") || strings.HasPrefix(trimmed, "<html"):
		return "; this looks like an HTML page, not a bundle (an error page or a login page?)"
	case strings.HasPrefix(trimmed, "-----begin"):
		return "; this looks like PEM: use -format pem"
	}
	return ""
}

func jsonHint(data []byte) string {
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		return "; this looks like JSON: use -format spiffe"
	}
	return ""
}

// joseError turns go-jose's messages into something an operator can act on.
func joseError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")
	if strings.Contains(msg, "x5c") || strings.Contains(msg, "certificate") {
		return "bad certificate in x5c: " + msg
	}
	return "bad key: " + msg
}
