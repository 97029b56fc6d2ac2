package bundleendpoint

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const acmeDomain = "bundle.alpha.test"

// cacheACMECert writes to dir what autocert caches after an issuance: the
// ECDSA key and a certificate for domain valid until notAfter. Served
// from the cache, it needs no CA.
func cacheACMECert(t *testing.T, dir, domain string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: domain}, DNSNames: []string{domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	data := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, domain), data, 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

// newTestACME is an ACME certificate source whose CA listens nowhere, so
// that only the cache can answer.
func newTestACME(t *testing.T, cacheDir string) *acmeCert {
	t.Helper()
	a, err := newACMECert(ACMEConfig{DirectoryURL: "https://127.0.0.1:1/directory", DomainName: acmeDomain, CacheDir: cacheDir})
	require.NoError(t, err)
	return a
}

func TestACMEServesTheCachedCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "acme")
	want := cacheACMECert(t, dir, acmeDomain, time.Now().Add(90*24*time.Hour).Truncate(time.Second))
	a := newTestACME(t, dir)

	cert, err := a.current()
	require.NoError(t, err)
	require.Equal(t, want.Raw, cert.Leaf.Raw)
	require.Equal(t, want.NotAfter, a.cachedExpiry())

	t.Run("ok/no SNI gets the domain's certificate", func(t *testing.T) {
		cert, err := a.getCertificate(&tls.ClientHelloInfo{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.CurveP256}})
		require.NoError(t, err)
		require.Equal(t, want.Raw, cert.Leaf.Raw)
	})
	t.Run("fail/another name", func(t *testing.T) {
		_, err := a.getCertificate(&tls.ClientHelloInfo{ServerName: "evil.example"})
		require.Error(t, err, "only the configured domain gets a certificate")
	})
	t.Run("ok/obtain returns at once", func(t *testing.T) {
		a.obtain(t.Context(), slog.New(slog.DiscardHandler))
	})
}

func TestACMEWithoutCertificate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache func(t *testing.T, dir string)
		// cached is whether a certificate, unusable, is in the cache.
		cached bool
	}{
		{name: "fail/empty cache", cache: func(*testing.T, string) {}},
		{name: "fail/expired certificate", cache: func(t *testing.T, dir string) { cacheACMECert(t, dir, acmeDomain, time.Now().Add(-time.Minute)) }, cached: true},
		{name: "fail/certificate of another domain", cache: func(t *testing.T, dir string) {
			cacheACMECert(t, dir, "other.test", time.Now().Add(time.Hour))
			require.NoError(t, os.Rename(filepath.Join(dir, "other.test"), filepath.Join(dir, acmeDomain)))
		}, cached: true},
		{name: "fail/garbage in the cache", cache: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, acmeDomain), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "acme")
			a := newTestACME(t, dir)
			tc.cache(t, dir)
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // one attempt, then obtain sees the context done
			a.obtain(ctx, slog.New(slog.DiscardHandler))
			_, err := a.current()
			require.Error(t, err, "the CA is unreachable and nothing valid is cached")
			require.Equal(t, !tc.cached, a.cachedExpiry().IsZero(), "the expiry metric reads what is cached, usable or not")
		})
	}
}

func TestACMECacheDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "acme")
	newTestACME(t, dir)
	info, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "the cache holds the account key")
}

func TestACMEHTTPClient(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	ca := cacheACMECert(t, filepath.Join(dir, "c"), "ca.test", time.Now().Add(time.Hour))
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600))
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	for _, tc := range []struct {
		name, file, phrase string
	}{
		{name: "ok/system roots", file: ""},
		{name: "ok/extra roots", file: caFile},
		{name: "fail/missing file", file: filepath.Join(dir, "missing.pem"), phrase: "acme ca_file"},
		{name: "fail/no certificate", file: notPEM, phrase: "no PEM certificate found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := acmeHTTPClient(tc.file)
			if tc.phrase != "" {
				require.ErrorContains(t, err, tc.phrase)
				_, err = newACMECert(ACMEConfig{CAFile: tc.file, CacheDir: filepath.Join(dir, "x")})
				require.ErrorContains(t, err, tc.phrase, "the server refuses to start")
				return
			}
			require.NoError(t, err)
			require.Equal(t, time.Minute, c.Timeout, "requests to the CA are bounded")
		})
	}
}
