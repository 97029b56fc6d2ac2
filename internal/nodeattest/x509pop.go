package nodeattest

import (
	"context"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // SPIRE names certificates by their SHA-1 fingerprint; an identifier, not a signature
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultMaxIntermediates is how many certificates may follow the leaf in
// an x509pop payload unless configured otherwise (spire-server's default).
const DefaultMaxIntermediates = 4

// maxRSAKeyBits bounds the RSA keys of a presented chain, so that a huge key
// cannot make verification slow (spire-server's default max_rsa_key_size).
const maxRSAKeyBits = 8192

// X509POPConfig configures the x509pop attestor.
type X509POPConfig struct {
	// TrustDomain is the server's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// CAs are the certificate authorities that issue node certificates: an
	// agent's leaf must chain to one of them. Required and not empty; the
	// system roots are never used.
	CAs *x509.CertPool
	// MaxIntermediates is how many certificates may follow the leaf;
	// default DefaultMaxIntermediates.
	MaxIntermediates int
	// AgentPathTemplate makes the agent ID's path under /spire/agent from
	// the leaf certificate (see DefaultAgentPathTemplate for the fields);
	// default DefaultAgentPathTemplate.
	AgentPathTemplate string
	// Now returns the current time, at which chains are verified; default
	// time.Now.
	Now func() time.Time
}

// X509POP attests an agent by an X.509 certificate issued by a configured
// CA and proof that the agent holds its private key: a signature over a
// nonce of ours and one of its own. The agent may attest again whenever it
// needs a new SVID.
type X509POP struct {
	td               spiffeid.TrustDomain
	cas              *x509.CertPool
	maxIntermediates int
	path             *template.Template
	now              func() time.Time
}

var _ Attestor = (*X509POP)(nil)

// NewX509POP returns the x509pop attestor. A template that fails on a sample
// certificate is refused here rather than on every agent.
func NewX509POP(cfg X509POPConfig) (*X509POP, error) {
	if cfg.TrustDomain.IsZero() || cfg.CAs == nil || cfg.CAs.Equal(x509.NewCertPool()) {
		return nil, errors.New("nodeattest: x509pop needs a trust domain and at least one CA")
	}
	if cfg.MaxIntermediates < 0 {
		return nil, fmt.Errorf("nodeattest: x509pop max intermediates is %d, must not be negative", cfg.MaxIntermediates)
	}
	if cfg.MaxIntermediates == 0 {
		cfg.MaxIntermediates = DefaultMaxIntermediates
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	path, err := parseAgentPathTemplate(cfg.TrustDomain, cfg.AgentPathTemplate)
	if err != nil {
		return nil, fmt.Errorf("nodeattest: x509pop agent path template: %w", err)
	}
	return &X509POP{td: cfg.TrustDomain, cas: cfg.CAs, maxIntermediates: cfg.MaxIntermediates, path: path, now: cfg.Now}, nil
}

// Type returns "x509pop".
func (*X509POP) Type() string { return TypeX509POP }

// Attest reads the certificate chain in payload, verifies it against the
// CAs, challenges the agent to sign with the leaf's key, and names the
// agent from the leaf.
func (p *X509POP) Attest(ctx context.Context, payload []byte, challenge ChallengeFunc) (Result, error) {
	if challenge == nil {
		return Result{}, errors.New("nodeattest: x509pop needs a challenge function")
	}
	certs, err := parsePayload(payload, p.maxIntermediates)
	if err != nil {
		return Result{}, err
	}
	chains, err := p.verify(certs)
	if err != nil {
		return Result{}, err
	}
	if err := prove(ctx, certs[0], challenge); err != nil {
		return Result{}, err
	}
	id, err := p.agentID(certs[0])
	if err != nil {
		return Result{}, err
	}
	return Result{AgentID: id, Selectors: selectors(certs[0], chains), CanReattest: true}, nil
}

// verify checks that the leaf chains to a configured CA through the
// intermediates the agent sent, and is fit to prove possession of its key.
func (p *X509POP) verify(certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         p.cas,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   p.now(),
	})
	if err != nil {
		return nil, denied("certificate verification failed", err,
			"the agent's certificate must be valid now and chain, through the intermediates it sends, to a CA configured for x509pop")
	}
	if err := checkLeaf(certs[0]); err != nil {
		return nil, err
	}
	return chains, nil
}

// checkLeaf refuses a leaf whose key cannot answer the challenge.
func checkLeaf(leaf *x509.Certificate) error {
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return denied("the agent's certificate does not allow digital signatures", nil,
			"x509pop proves possession of the key by a signature: issue the node certificate with the digitalSignature key usage")
	}
	if leaf.PublicKeyAlgorithm != x509.RSA && leaf.PublicKeyAlgorithm != x509.ECDSA {
		return denied(fmt.Sprintf("the agent's certificate has a key of type %s", leaf.PublicKeyAlgorithm), nil,
			"x509pop works with RSA and ECDSA keys: issue the node certificate for one of those")
	}
	return nil
}

// parsePayload reads the agent's payload, {"certificates": [DER, ...]} with
// the leaf first, into certificates. The count is checked before any is
// parsed.
func parsePayload(payload []byte, maxIntermediates int) ([]*x509.Certificate, error) {
	var data attestationData
	if err := json.Unmarshal(payload, &data); err != nil {
		return nil, malformed("x509pop payload is not a certificate list", err,
			`the agent sends {"certificates": [base64 DER, ...]}: check that it runs the x509pop attestor`)
	}
	if len(data.Certificates) == 0 {
		return nil, malformed("x509pop payload holds no certificate", nil,
			"check the agent's certificate_path")
	}
	if n := len(data.Certificates) - 1; n > maxIntermediates {
		return nil, malformed(fmt.Sprintf("x509pop payload holds %d intermediate certificates, more than the %d allowed", n, maxIntermediates), nil,
			"shorten the chain in the agent's intermediates_path, or raise the server's x509pop max intermediates")
	}
	certs := make([]*x509.Certificate, len(data.Certificates))
	for i, der := range data.Certificates {
		c, err := parseCertificate(i, der)
		if err != nil {
			return nil, err
		}
		certs[i] = c
	}
	return certs, nil
}

// parseCertificate parses the i-th certificate of the payload (0 is the
// leaf) and bounds its RSA key size.
func parseCertificate(i int, der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, malformed(fmt.Sprintf("x509pop certificate %d (0 is the leaf) cannot be parsed", i), err,
			"check the PEM files in the agent's certificate_path and intermediates_path")
	}
	if k, ok := c.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() > maxRSAKeyBits {
		return nil, malformed(fmt.Sprintf("x509pop certificate %d (0 is the leaf) has a %d-bit RSA key, more than %d", i, k.N.BitLen(), maxRSAKeyBits), nil,
			"issue node certificates and CAs with smaller keys")
	}
	return c, nil
}

// selectors describe the node by its leaf and the CAs that vouch for it:
// subject:cn:<common name> when it has one, ca:fingerprint:<SHA-1> for every
// certificate above the leaf in any verified chain (root included, each
// once), and serialnumber:<hex>, all of type x509pop, as spire-server gives
// them.
func selectors(leaf *x509.Certificate, chains [][]*x509.Certificate) []Selector {
	var values []string
	if cn := leaf.Subject.CommonName; cn != "" {
		values = append(values, "subject:cn:"+cn)
	}
	seen := make(map[string]bool)
	for _, chain := range chains {
		for _, ca := range chain[1:] {
			if fp := fingerprint(ca); !seen[fp] {
				seen[fp] = true
				values = append(values, "ca:fingerprint:"+fp)
			}
		}
	}
	values = append(values, "serialnumber:"+serialNumberHex(leaf.SerialNumber))
	s := make([]Selector, len(values))
	for i, v := range values {
		s[i] = Selector{Type: TypeX509POP, Value: v}
	}
	return s
}

// fingerprint is the lower-case hex SHA-1 of the certificate's DER.
func fingerprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw) //nolint:gosec // see the import
	return hex.EncodeToString(sum[:])
}

// serialNumberHex is the serial in lower-case hex with an even number of
// digits, as openssl and most tools show it.
func serialNumberHex(n *big.Int) string {
	s := n.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}
