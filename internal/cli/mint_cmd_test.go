package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/testpki"
)

var alphaTD = spiffeid.RequireTrustDomainFromString("alpha.test")

func localBundle(t *testing.T, socket string) *spiffebundle.Bundle {
	t.Helper()
	doc, stderr, code := run(t, "", "bundle", "show", "-socketPath", socket, "-format", "spiffe")
	require.Zero(t, code, stderr)
	b, err := spiffebundle.Parse(alphaTD, []byte(doc))
	require.NoError(t, err)
	return b
}

func TestX509Mint(t *testing.T) {
	socket := startServer(t, "alpha.test")
	trust := x509bundle.FromX509Authorities(alphaTD, localBundle(t, socket).X509Authorities())

	t.Run("ok/key made here, files written", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		out, stderr, code := run(t, "", "x509", "mint", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/device/7", "-dns", "dev7.local", "-ttl", "2h", "-write", dir)
		require.Zero(t, code, stderr)
		require.Equal(t, "X509-SVID written to "+dir+"/svid.pem\nPrivate key written to "+dir+"/key.pem\nRoot CAs written to "+dir+"/bundle.pem\n", out)
		svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
		require.NoError(t, err)
		require.Equal(t, "spiffe://alpha.test/device/7", svid.ID.String())
		require.Equal(t, []string{"dev7.local"}, svid.Certificates[0].DNSNames)
		_, _, err = x509svid.Verify(svid.Certificates, trust)
		require.NoError(t, err)
		info, err := os.Stat(filepath.Join(dir, "key.pem"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	})
	t.Run("ok/from a CSR made on the device", func(t *testing.T) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		u, _ := url.Parse("spiffe://alpha.test/device/8")
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		require.NoError(t, err)
		csr := filepath.Join(t.TempDir(), "device.csr")
		require.NoError(t, os.WriteFile(csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600))
		out, stderr, code := run(t, "", "x509", "mint", "-socketPath", socket, "-csr", csr, "-output", "json")
		require.Zero(t, code, stderr)
		var res mintResult
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		require.Nil(t, res.PrivateKey, "the key stays on the device")
		leaf, err := x509.ParseCertificate(res.X509SVID[0])
		require.NoError(t, err)
		require.True(t, leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()))
		_, _, err = x509svid.Verify([]*x509.Certificate{leaf}, trust)
		require.NoError(t, err)
	})
	for _, tc := range []struct{ name, id, want string }{
		{"fail/another trust domain", "spiffe://beta.test/device/1", "not in this server's trust domain alpha.test"},
		{"fail/trust domain ID", "spiffe://alpha.test", "give a workload path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t, "", "x509", "mint", "-socketPath", socket, "-spiffeID", tc.id)
			require.Equal(t, 1, code)
			require.Contains(t, stderr, tc.want)
		})
	}
	t.Run("ok/granted ttl is not reported as capped", func(t *testing.T) {
		_, stderr, code := run(t, "", "x509", "mint", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/device/9", "-ttl", "600s")
		require.Zero(t, code, stderr)
		require.Empty(t, stderr)
	})
	t.Run("ok/ttl beyond the authority is capped and says what to change", func(t *testing.T) {
		_, stderr, code := run(t, "", "x509", "mint", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/device/9", "-ttl", "2000h")
		require.Zero(t, code, stderr)
		require.Contains(t, stderr, "X509-SVID lifetime was capped shorter than specified ttl")
		require.Contains(t, stderr, "an SVID never outlives the authority that signs it: ask for -ttl 719h or less, or raise ca.ca_ttl in the server's configuration")
	})
	t.Run("fail/not a CSR", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "x.csr")
		require.NoError(t, os.WriteFile(bad, []byte("hello"), 0o600))
		_, stderr, code := run(t, "", "x509", "mint", "-socketPath", socket, "-csr", bad)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "is not a PKCS#10 certificate request")
	})
}

func TestJWTMint(t *testing.T) {
	socket := startServer(t, "alpha.test")
	keys := jwtbundle.FromJWTAuthorities(alphaTD, localBundle(t, socket).JWTAuthorities())
	out, stderr, code := run(t, "", "jwt", "mint", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/device/7", "-audience", "partner", "-audience", "other")
	require.Zero(t, code, stderr)
	svid, err := jwtsvid.ParseAndValidate(strings.TrimSpace(out), keys, []string{"other"})
	require.NoError(t, err)
	require.Equal(t, "spiffe://alpha.test/device/7", svid.ID.String())

	_, stderr, code = run(t, "", "jwt", "mint", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/device/7", "-audience", "partner", "-ttl", "60s")
	require.Zero(t, code, stderr)
	require.Empty(t, stderr, "the full ttl was granted")

	_, stderr, code = run(t, "", "jwt", "mint", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/device/7")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "at least one -audience is required")
}

// TestStaticDeviceBundle imports a device fleet's CA as a bundle for its
// own trust domain and checks that it is shown and tracked like a partner.
func TestStaticDeviceBundle(t *testing.T) {
	socket := startServer(t, "alpha.test")
	ca := testpki.CACertValid(t, "spiffe://devices.test", time.Now().AddDate(-1, 0, 0), time.Now().Add(10*24*time.Hour+time.Hour))
	file := filepath.Join(t.TempDir(), "devices.pem")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600))
	_, stderr, code := run(t, "", "bundle", "set", "-socketPath", socket, "-format", "pem", "-id", "spiffe://devices.test", "-path", file)
	require.Zero(t, code, stderr)

	out, stderr, code := run(t, "", "bundle", "show", "-socketPath", socket, "-id", "spiffe://devices.test", "-format", "pem")
	require.Zero(t, code, stderr)
	require.Equal(t, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})), out)

	out, stderr, code = run(t, "", "federation", "status", "-socketPath", socket)
	require.Zero(t, code, stderr)
	require.Regexp(t, `devices\.test\s+static\s+never`, out)
	require.Contains(t, out, "devices.test: warning: an authority of this static bundle expires in 10 days", "the device CA has 10 days left")
}
