package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Inspection describes a bundle for people: what each authority is and
// when it expires.
type Inspection struct {
	TrustDomain string `json:"trust_domain"`
	Format      string `json:"format"`
	// RefreshHintSeconds is zero when the bundle has none.
	RefreshHintSeconds int64       `json:"refresh_hint_seconds"`
	RefreshHint        string      `json:"refresh_hint"`
	Sequence           *uint64     `json:"sequence"`
	Authorities        []Authority `json:"authorities"`
	Warnings           []string    `json:"warnings"`
	// Ignored lists the entries a client leaves out (their messages are
	// among Warnings too).
	Ignored []Ignored `json:"ignored"`
	// EffectivelyEmpty is set when the document has entries but none is
	// usable (SPIFFE Trust Domain and Bundle §4.1.3).
	EffectivelyEmpty bool   `json:"effectively_empty"`
	Fingerprint      string `json:"fingerprint"`
}

// Authority is one key of a bundle.
type Authority struct {
	Use string `json:"use"`
	// KeyType is e.g. "EC P-256" or "RSA 2048".
	KeyType string `json:"key_type"`
	// KeyID is the JWT key ID, or the X.509 subject key identifier (hex).
	KeyID    string `json:"key_id"`
	SPIFFEID string `json:"spiffe_id,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	IsCA     bool   `json:"is_ca"`
	// NotBefore and NotAfter are absent for JWT keys, which SPIFFE bundles
	// give no lifetime.
	NotBefore *time.Time `json:"not_before,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
	ExpiresIn string     `json:"expires_in,omitempty"`
	// SHA256 is the fingerprint of the certificate (X.509) or of the
	// public key in PKIX form (JWT).
	SHA256 string `json:"sha256"`
}

// Inspect parses a bundle (JSON or PEM) and describes it. td may be zero:
// it is then taken from the certificates' SPIFFE IDs.
func Inspect(td spiffeid.TrustDomain, data []byte, now time.Time) (*Inspection, error) {
	format := DetectFormat(data)
	if td.IsZero() {
		td = InferTrustDomain(data)
	}
	parse := Parse
	if format == FormatPEM {
		parse = ParsePEM
	}
	res, err := parse(td, data, Options{Now: now})
	if err != nil {
		return nil, err
	}
	b := res.Bundle
	in := &Inspection{TrustDomain: td.Name(), Format: format, Warnings: res.Warnings, Ignored: res.Ignored, EffectivelyEmpty: res.EffectivelyEmpty()}
	if hint, ok := b.RefreshHint(); ok {
		in.RefreshHintSeconds, in.RefreshHint = int64(hint/time.Second), hint.String()+" ("+humanDuration(hint)+")"
	}
	if seq, ok := b.SequenceNumber(); ok {
		in.Sequence = &seq
	}
	for _, c := range b.X509Authorities() {
		in.Authorities = append(in.Authorities, x509Info(c, now))
	}
	keys := b.JWTAuthorities()
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		in.Authorities = append(in.Authorities, jwtInfo(kid, keys[kid]))
	}
	if in.Fingerprint, err = Fingerprint(b); err != nil {
		return nil, err
	}
	if in.Warnings == nil {
		in.Warnings = []string{}
	}
	if in.Ignored == nil {
		in.Ignored = []Ignored{}
	}
	return in, nil
}

func x509Info(c *x509.Certificate, now time.Time) Authority {
	sum := sha256.Sum256(c.Raw)
	a := Authority{
		Use: UseX509SVID, KeyType: keyType(c.PublicKey), KeyID: hex.EncodeToString(c.SubjectKeyId),
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), IsCA: c.IsCA,
		NotBefore: &c.NotBefore, NotAfter: &c.NotAfter, SHA256: hex.EncodeToString(sum[:]),
	}
	for _, u := range c.URIs {
		if id, err := spiffeid.FromURI(u); err == nil {
			a.SPIFFEID = id.String()
		}
	}
	if left := c.NotAfter.Sub(now); left > 0 {
		a.ExpiresIn = humanDuration(left)
	} else {
		a.ExpiresIn = "expired " + humanDuration(-left) + " ago"
	}
	return a
}

func jwtInfo(kid string, key crypto.PublicKey) Authority {
	a := Authority{Use: UseJWTSVID, KeyType: keyType(key), KeyID: kid}
	if der, err := x509.MarshalPKIXPublicKey(key); err == nil {
		sum := sha256.Sum256(der)
		a.SHA256 = hex.EncodeToString(sum[:])
	}
	return a
}

func keyType(key crypto.PublicKey) string {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", key)
}

// humanDuration writes d in the largest sensible unit: "5m0s (5 minutes)",
// "29 days".
func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return d.Round(time.Second).String()
}

// InferTrustDomain returns the trust domain named by the first SPIFFE ID
// found in the document's certificates, or "unknown.invalid" when none has
// one.
func InferTrustDomain(data []byte) spiffeid.TrustDomain {
	for _, c := range looseCertificates(data) {
		for _, u := range c.URIs {
			if id, err := spiffeid.FromURI(u); err == nil {
				return id.TrustDomain()
			}
		}
	}
	return spiffeid.RequireTrustDomainFromString("unknown.invalid")
}

// looseCertificates returns whatever certificates parse in a JSON or PEM
// document, ignoring everything else.
func looseCertificates(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	if DetectFormat(data) == FormatPEM {
		for rest := data; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				return out
			}
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				out = append(out, c)
			}
		}
	}
	var doc struct {
		Keys []struct {
			X5c [][]byte `json:"x5c"`
		} `json:"keys"`
	}
	_ = json.Unmarshal(data, &doc)
	for _, k := range doc.Keys {
		for _, der := range k.X5c {
			if c, err := x509.ParseCertificate(der); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
