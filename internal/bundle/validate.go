package bundle

import (
	"bytes"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/finding"
)

// DefaultExpiryWarning is how close to expiry an authority is flagged.
const DefaultExpiryWarning = 30 * 24 * time.Hour

// ValidateOptions tune Validate.
type ValidateOptions struct {
	// Now is the time expiry is judged at; zero means time.Now().
	Now time.Time
	// ExpiryWarning flags authorities expiring within it; zero means
	// DefaultExpiryWarning.
	ExpiryWarning time.Duration
}

// Validation is what Validate found: one or more findings per check, a
// pass for each check that found nothing.
type Validation struct {
	TrustDomain string `json:"trust_domain"`
	// Format is "spiffe" (JSON) or "pem".
	Format   string            `json:"format"`
	Findings []finding.Finding `json:"findings"`
	// Ignored lists the entries a client leaves out of the bundle.
	Ignored []Ignored `json:"ignored"`
	// Bundle is what a client would use, nil when the document is
	// unusable as a whole.
	Bundle *spiffebundle.Bundle `json:"-"`
}

// Worst returns the severity that decides the validation (finding.Worst).
func (v *Validation) Worst() finding.Severity { return finding.Worst(v.Findings) }

// Fix says, for each check, what to do when it does not pass.
var Fix = map[finding.CheckID]string{
	CheckFormat:      "export the bundle again: `treaty bundle show -format spiffe` (or `spire-server bundle show -format spiffe`) on the owning server",
	CheckMembers:     "remove the unknown members; a SPIFFE bundle has keys, spiffe_refresh_hint and spiffe_sequence",
	CheckKeys:        `wrap the keys in a JWK Set: {"keys": [...]}`,
	CheckPrivateKey:  "remove the private key from the bundle, then treat it as compromised: rotate that authority",
	CheckKeyType:     `give each key a "kty" of EC or RSA (unsupported keys are skipped by clients)`,
	CheckUse:         `set "use" to "x509-svid" for CA certificates and "jwt-svid" for JWT signing keys`,
	CheckX5C:         `put the CA certificate, DER in standard base64, first (and best alone) in each x509-svid key's "x5c"`,
	CheckKeyMatch:    `export the key again from its certificate: an x509-svid key's kty, crv, x, y (or n, e) must be the x5c certificate's public key`,
	CheckCA:          "publish the trust domain's CA certificate (CA:TRUE, keyCertSign), not a leaf SVID",
	CheckTrustDomain: "check that this is the bundle of the trust domain you named; its certificates name another one",
	CheckDuplicate:   "remove the duplicate keys; key IDs must be unique",
	CheckJWTKID:      `give every jwt-svid key a unique "kid"`,
	CheckJWTKey:      "re-export the JWT key; it does not decode as a public key",
	CheckUsable:      "fix the ignored entries (see their findings): a bundle whose every entry is ignored verifies nothing",
	CheckX509Present: "include the trust domain's X.509 authorities; without one no X509-SVID can be verified",
	CheckExpiry:      "get the current bundle from the owner; expired authorities verify nothing, and ones about to expire need a successor",
	CheckRefreshHint: "publish spiffe_refresh_hint in seconds, minutes rather than days (treaty's default is 300)",
	CheckSequence:    `spell the member "spiffe_sequence" and make it a whole number that rises with every change`,
}

var passMessage = map[finding.CheckID]string{
	CheckFormat:      "well formed",
	CheckMembers:     "no unknown members",
	CheckKeys:        "keys is a JWK array",
	CheckPrivateKey:  "no private key material",
	CheckKeyType:     "every key has a supported kty",
	CheckUse:         "every key has a known use",
	CheckX5C:         "every x509-svid key carries one certificate",
	CheckKeyMatch:    "every x509-svid key matches its certificate",
	CheckCA:          "every X.509 authority is a CA allowed to sign",
	CheckTrustDomain: "no certificate names another trust domain",
	CheckDuplicate:   "no duplicate keys",
	CheckJWTKID:      "every JWT key has a kid",
	CheckJWTKey:      "every JWT key decodes",
	CheckUsable:      "has usable entries (or an empty key set)",
	CheckX509Present: "has X.509 authorities",
	CheckExpiry:      "nothing expired or expiring soon",
	CheckRefreshHint: "refresh hint is sensible",
	CheckSequence:    "sequence is well formed",
}

// Validate runs every check on a bundle document of trust domain td,
// JSON (SPIFFE) or PEM, detected from its content.
func Validate(td spiffeid.TrustDomain, data []byte, opts ValidateOptions) *Validation {
	if opts.ExpiryWarning == 0 {
		opts.ExpiryWarning = DefaultExpiryWarning
	}
	p := newParser(td, Options{Now: opts.Now})
	v := &Validation{TrustDomain: td.Name(), Format: DetectFormat(data)}
	if v.Format == FormatPEM {
		p.parsePEM(data)
	} else {
		p.parseJSON(data)
	}
	skip := []finding.CheckID{CheckX509Present, CheckExpiry}
	switch {
	case len(p.problems) > 0:
	case p.entries > 0 && p.bundle.Empty():
		v.Bundle = p.bundle
		p.problem(CheckUsable, "every one of its %d entries is ignored, so the bundle is effectively empty: a client must treat every SVID of %q as untrusted (SPIFFE Trust Domain and Bundle §4.1.3)", p.entries, p.td.Name())
	default:
		v.Bundle = p.bundle
		p.extraChecks(v.Format, opts.ExpiryWarning)
		skip = nil
	}
	v.Ignored = p.ignored
	if v.Ignored == nil {
		v.Ignored = []Ignored{}
	}
	v.Findings = withPasses(p.findings, skip)
	return v
}

// extraChecks are the checks beyond what Parse needs: a usable bundle
// that would still cause trouble.
func (p *parser) extraChecks(format string, warnWithin time.Duration) {
	certs := p.bundle.X509Authorities()
	if len(certs) == 0 {
		p.problem(CheckX509Present, "no x509-svid authority: this bundle cannot verify any X509-SVID (fine only if the trust domain uses JWT-SVIDs alone)")
	}
	expired := 0
	for _, c := range certs {
		switch left := c.NotAfter.Sub(p.opts.Now); {
		case left <= 0:
			expired++
		case left < warnWithin:
			p.warn(CheckExpiry, "certificate %q expires in %s (%s)", c.Subject, humanDuration(left), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if expired > 0 && expired == len(certs) {
		p.problem(CheckExpiry, "every X.509 authority has expired: this bundle verifies nothing; the owner has rotated since it was exported")
	}
	if hint, ok := p.bundle.RefreshHint(); format == FormatSPIFFE && ok && hint == 0 {
		p.warn(CheckRefreshHint, "spiffe_refresh_hint is 0: partners fall back to their own default interval")
	}
}

// withPasses adds a pass finding for every check that found nothing,
// orders findings by check and gives those that did not pass their fix.
func withPasses(found []finding.Finding, skipped []finding.CheckID) []finding.Finding {
	var out []finding.Finding
	for _, check := range Checks {
		n := 0
		for _, f := range found {
			if f.Check == check {
				f.Fix = Fix[check]
				out = append(out, f)
				n++
			}
		}
		switch {
		case n > 0:
		case slices.Contains(skipped, check):
			out = append(out, finding.Finding{Check: check, Severity: finding.Skip, Message: "not checked: the bundle is unusable (see the failures)", Fix: Fix[check]})
		default:
			out = append(out, finding.Finding{Check: check, Severity: finding.Pass, Message: passMessage[check]})
		}
	}
	return out
}

// Bundle formats.
const (
	FormatSPIFFE = "spiffe"
	FormatPEM    = "pem"
	FormatJWKS   = "jwks"
)

// DetectFormat tells PEM from JSON by the first non-space bytes.
func DetectFormat(data []byte) string {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		return FormatPEM
	}
	return FormatSPIFFE
}
