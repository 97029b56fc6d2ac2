package nodeattest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority for node certificates in tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newRootCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := ecKey(t)
	tmpl := caTemplate(name)
	return &testCA{cert: sign(t, tmpl, tmpl, key.Public(), key), key: key}
}

// intermediate returns a CA issued by ca.
func (ca *testCA) intermediate(t *testing.T, name string) *testCA {
	t.Helper()
	key := ecKey(t)
	return &testCA{cert: sign(t, caTemplate(name), ca.cert, key.Public(), ca.key), key: key}
}

// leaf issues a node certificate for key: common name node-1, digital
// signature key usage, valid for an hour either side of now; edit changes
// the template first.
func (ca *testCA) leaf(t *testing.T, key crypto.Signer, edit ...func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	return ca.leafFor(t, key.Public(), edit...)
}

// leafFor is leaf for a public key alone.
func (ca *testCA) leafFor(t *testing.T, pub crypto.PublicKey, edit ...func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: "node-1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, e := range edit {
		e(tmpl)
	}
	return sign(t, tmpl, ca.cert, pub, ca.key)
}

// pool is a CertPool of the CAs' certificates.
func pool(cas ...*testCA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.cert)
	}
	return p
}

func caTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
}

func sign(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

func randomSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	require.NoError(t, err)
	return n
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return key
}

func edKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return key
}

// rsaKeys are made once: generating RSA keys is slow under -race.
var rsaKeys = sync.OnceValues(func() ([2]*rsa.PrivateKey, error) {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return keys, err
		}
		keys[i] = k
	}
	return keys, nil
})

// rsaKey returns one of two RSA keys shared by the tests.
func rsaKey(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	keys, err := rsaKeys()
	require.NoError(t, err)
	return keys[i]
}
