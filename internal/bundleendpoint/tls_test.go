package bundleendpoint

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
)

// opensslBinary finds the openssl command line tool (Debian's openssl), or
// skips the test; under TREATY_E2E=1 (strict mode) it fails instead.
func opensslBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err == nil {
		return p
	}
	msg := "openssl not found: install Debian's openssl to test the endpoint's TLS from an outside client"
	if os.Getenv("TREATY_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// handshake is one openssl s_client run against the endpoint.
type handshake struct {
	name string
	// args select the protocol and what the client offers.
	args []string
	// want is a line s_client prints for the handshake expected (its
	// suite or key exchange group), or "" for a refused handshake.
	want string
}

// TestTLSMozillaIntermediate checks the endpoint's TLS from outside with
// openssl s_client, which, unlike Go's client, still offers CBC, RSA key
// exchange and DHE suites and old protocol versions (@SECLEVEL=0 lifts
// OpenSSL's own floor, so a refusal is the server's). Every profile and
// certificate type is covered, since the suites a server can pick depend on
// its certificate's key.
func TestTLSMozillaIntermediate(t *testing.T) {
	openssl := opensslBinary(t)
	// Go's escape hatches put RSA key exchange and 3DES back into its
	// default list; the endpoint's explicit list must not follow them.
	t.Setenv("GODEBUG", "tlsrsakex=1,tls3des=1")
	c := newCA(t)
	ecdsaCert, ecdsaKey := writeECDSAWebPair(t)
	rsaCert, rsaKey := writeRSAWebPair(t)

	common := []handshake{
		// SPIFFE Federation §5: TLS 1.3 as is.
		{"ok/tls1.3 aes128-gcm", []string{"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"}, "Ciphersuite: TLS_AES_128_GCM_SHA256"},
		// SPIFFE Federation §5: TLS 1.3 as is.
		{"ok/tls1.3 chacha20-poly1305", []string{"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"}, "Ciphersuite: TLS_CHACHA20_POLY1305_SHA256"},
		// SPIFFE Federation §5: Mozilla intermediate's groups.
		{"ok/tls1.3 x25519", []string{"-tls1_3", "-groups", "X25519"}, "Server Temp Key: X25519"},
		// SPIFFE Federation §5: Mozilla intermediate's groups.
		{"ok/tls1.2 p-256", []string{"-tls1_2", "-cipher", "ECDHE:@SECLEVEL=0", "-groups", "P-256"}, "Server Temp Key: ECDH, prime256v1"},
		// SPIFFE Federation §5: Mozilla intermediate's groups.
		{"ok/tls1.3 p-384", []string{"-tls1_3", "-groups", "P-384"}, "Server Temp Key: ECDH, secp384r1"},
		// SPIFFE Federation §5: P-521 is not among Mozilla intermediate's groups.
		{"fail/tls1.3 p-521 only", []string{"-tls1_3", "-groups", "P-521"}, ""},
		// SPIFFE Federation §5: nothing older than TLS 1.2.
		{"fail/tls1.1", []string{"-tls1_1", "-cipher", "ALL:@SECLEVEL=0"}, ""},
		// SPIFFE Federation §5: DHE is not offered (Go has no DHE).
		{"fail/dhe", tls12("DHE-RSA-AES128-GCM-SHA256"), ""},
	}
	ecdsaCases := []handshake{
		// SPIFFE Federation §5: ECDHE with AES-GCM.
		{"ok/ecdhe-ecdsa aes128-gcm", tls12("ECDHE-ECDSA-AES128-GCM-SHA256"), "Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256"},
		// SPIFFE Federation §5: ECDHE with AES-GCM.
		{"ok/ecdhe-ecdsa aes256-gcm", tls12("ECDHE-ECDSA-AES256-GCM-SHA384"), "Ciphersuite: ECDHE-ECDSA-AES256-GCM-SHA384"},
		// SPIFFE Federation §5: ECDHE with ChaCha20-Poly1305.
		{"ok/ecdhe-ecdsa chacha20-poly1305", tls12("ECDHE-ECDSA-CHACHA20-POLY1305"), "Ciphersuite: ECDHE-ECDSA-CHACHA20-POLY1305"},
		// SPIFFE Federation §5: no CBC (this one is in Go's default list).
		{"fail/ecdhe-ecdsa cbc sha1", tls12("ECDHE-ECDSA-AES128-SHA"), ""},
		// SPIFFE Federation §5: no CBC.
		{"fail/ecdhe-ecdsa cbc sha256", tls12("ECDHE-ECDSA-AES128-SHA256"), ""},
		// SPIFFE Federation §5: no CBC.
		{"fail/ecdhe-ecdsa cbc sha384", tls12("ECDHE-ECDSA-AES256-SHA384"), ""},
	}
	rsaCases := []handshake{
		// SPIFFE Federation §5: ECDHE with AES-GCM, RSA certificate.
		{"ok/ecdhe-rsa aes128-gcm", tls12("ECDHE-RSA-AES128-GCM-SHA256"), "Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256"},
		// SPIFFE Federation §5: ECDHE with AES-GCM, RSA certificate.
		{"ok/ecdhe-rsa aes256-gcm", tls12("ECDHE-RSA-AES256-GCM-SHA384"), "Ciphersuite: ECDHE-RSA-AES256-GCM-SHA384"},
		// SPIFFE Federation §5: ECDHE with ChaCha20-Poly1305, RSA certificate.
		{"ok/ecdhe-rsa chacha20-poly1305", tls12("ECDHE-RSA-CHACHA20-POLY1305"), "Ciphersuite: ECDHE-RSA-CHACHA20-POLY1305"},
		// SPIFFE Federation §5: no RSA key exchange, even with AES-GCM.
		{"fail/rsa kx aes128-gcm", tls12("AES128-GCM-SHA256"), ""},
		// SPIFFE Federation §5: no RSA key exchange.
		{"fail/rsa kx aes256-gcm", tls12("AES256-GCM-SHA384"), ""},
		// SPIFFE Federation §5: no RSA key exchange, no CBC.
		{"fail/rsa kx cbc", tls12("AES128-SHA"), ""},
		// SPIFFE Federation §5: no CBC (this one is in Go's default list).
		{"fail/ecdhe-rsa cbc sha1", tls12("ECDHE-RSA-AES128-SHA"), ""},
		// SPIFFE Federation §5: no CBC.
		{"fail/ecdhe-rsa cbc sha256", tls12("ECDHE-RSA-AES128-SHA256"), ""},
	}
	profiles := []struct {
		name  string
		cfg   Config
		cases []handshake
	}{
		{"https_spiffe", Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c}, join(common, ecdsaCases)},
		{"https_web ecdsa", Config{Profile: profile.HTTPSWeb, CertFile: ecdsaCert, KeyFile: ecdsaKey}, join(common, ecdsaCases)},
		{"https_web rsa", Config{Profile: profile.HTTPSWeb, CertFile: rsaCert, KeyFile: rsaKey}, join(common, rsaCases)},
	}
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			p.cfg.Source = c
			_, url := serve(t, p.cfg)
			addr := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/")
			for _, h := range p.cases {
				t.Run(h.name, func(t *testing.T) {
					ok, out := sClient(t, openssl, addr, h.args)
					if h.want == "" {
						require.False(t, ok, "handshake should have been refused:\n%s", out)
						require.Regexp(t, `alert (handshake failure|protocol version)`, out, "the server, not the client, must refuse")
						return
					}
					require.True(t, ok, "handshake refused:\n%s", out)
					require.Contains(t, out, "\n"+h.want, "openssl output:\n%s", out)
				})
			}
		})
	}
}

// tls12 are s_client arguments offering one TLS 1.2 suite.
func tls12(suite string) []string {
	return []string{"-tls1_2", "-cipher", suite + ":@SECLEVEL=0"}
}

func join(lists ...[]handshake) []handshake {
	var all []handshake
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

// sClient runs openssl s_client against addr and reports whether the
// handshake succeeded, with openssl's output.
func sClient(t *testing.T, openssl, addr string, args []string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-brief", "-connect", addr}, args...)...)
	cmd.Stdin = strings.NewReader("") // EOF right after the handshake: s_client closes and exits
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "openssl s_client did not finish:\n%s", out)
	return err == nil && strings.Contains(string(out), "CONNECTION ESTABLISHED"), string(out)
}

// writeECDSAWebPair writes a P-256 web certificate for 127.0.0.1 and its key.
func writeECDSAWebPair(t *testing.T) (string, string) {
	t.Helper()
	_, certFile, keyFile := webPKI(t, t.TempDir())
	return certFile, keyFile
}

// writeRSAWebPair writes a self-signed RSA web certificate for 127.0.0.1
// and its key (a public CA's RSA certificate looks the same to TLS).
func writeRSAWebPair(t *testing.T) (string, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "bundle.alpha.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}
