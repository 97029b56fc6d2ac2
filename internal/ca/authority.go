package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// backdate is subtracted from NotBefore so that peers with slightly slow
// clocks accept a brand-new certificate.
const backdate = 30 * time.Second

// authority is a stored authority with its decoded certificate and key.
type authority struct {
	datastore.Authority
	cert   *x509.Certificate   // X.509 only
	chain  []*x509.Certificate // cert first, then upstream intermediates
	signer crypto.Signer       // nil for external authorities
	public crypto.PublicKey
}

func keyName(kind datastore.AuthorityKind, id string) string {
	return string(kind) + "-" + id
}

// newX509Authority creates a CA certificate for a fresh key: self-signed, or
// signed by the upstream CA when one is configured. Its lifetime is ttl,
// capped at the upstream certificate's expiry.
func newX509Authority(td spiffeid.TrustDomain, key crypto.Signer, ttl time.Duration, now time.Time, up *Upstream) (*authority, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"treaty"}, CommonName: td.Name() + " X.509 authority", SerialNumber: serial.String()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	parent, parentKey := tmpl, key
	var upstreamChain []*x509.Certificate
	if up != nil {
		parent, parentKey, upstreamChain = up.Chain[0], up.Key, up.Chain
		if tmpl.NotAfter.After(parent.NotAfter) {
			tmpl.NotAfter = parent.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return x509Record(cert, upstreamChain, key)
}

func x509Record(cert *x509.Certificate, upstreamChain []*x509.Certificate, key crypto.Signer) (*authority, error) {
	pub, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	chain := append([]*x509.Certificate{cert}, upstreamChain...)
	var chainDER []byte
	for _, c := range chain {
		chainDER = append(chainDER, c.Raw...)
	}
	a := &authority{
		Authority: datastore.Authority{
			Kind:             datastore.KindX509,
			ID:               hex.EncodeToString(cert.SubjectKeyId),
			CertificateChain: chainDER,
			PublicKey:        pub,
			NotBefore:        cert.NotBefore,
			NotAfter:         cert.NotAfter,
		},
		cert: cert, chain: chain, signer: key, public: cert.PublicKey,
	}
	if len(upstreamChain) > 0 {
		a.UpstreamSKID = hex.EncodeToString(upstreamChain[0].SubjectKeyId)
	}
	return a, nil
}

// newJWTAuthority wraps a fresh JWT signing key with a random key ID.
func newJWTAuthority(key crypto.Signer, ttl time.Duration, now time.Time) (*authority, error) {
	kid, err := newKeyID()
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return &authority{
		Authority: datastore.Authority{
			Kind: datastore.KindJWT, ID: kid, PublicKey: pub,
			NotBefore: now, NotAfter: now.Add(ttl),
		},
		signer: key, public: key.Public(),
	}, nil
}

const keyIDAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newKeyID returns 32 random alphanumeric characters (about 190 bits).
func newKeyID() (string, error) {
	buf := make([]byte, 32)
	limit := big.NewInt(int64(len(keyIDAlphabet)))
	for i := range buf {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return "", fmt.Errorf("generate key ID: %w", err)
		}
		buf[i] = keyIDAlphabet[n.Int64()]
	}
	return string(buf), nil
}

// decode rebuilds an authority from its stored record; the key is attached
// separately because external authorities have none.
func decode(rec datastore.Authority) (*authority, error) {
	a := &authority{Authority: rec}
	if rec.Kind == datastore.KindX509 {
		chain, err := x509.ParseCertificates(rec.CertificateChain)
		if err != nil {
			return nil, fmt.Errorf("stored X.509 authority %s: bad certificate chain: %w", rec.ID, err)
		}
		if len(chain) == 0 {
			return nil, fmt.Errorf("stored X.509 authority %s has no certificate", rec.ID)
		}
		a.cert, a.chain, a.public = chain[0], chain, chain[0].PublicKey
		return a, nil
	}
	pub, err := x509.ParsePKIXPublicKey(rec.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("stored JWT authority %s: bad public key: %w", rec.ID, err)
	}
	a.public = pub
	return a, nil
}
