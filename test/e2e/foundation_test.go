package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

func parseSPIFFE(t *testing.T, td, doc string) *spiffebundle.Bundle {
	t.Helper()
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString(td), []byte(doc))
	require.NoError(t, err, "go-spiffe rejects the bundle:\n%s", doc)
	return b
}

func sequence(t *testing.T, b *spiffebundle.Bundle) uint64 {
	t.Helper()
	n, ok := b.SequenceNumber()
	require.True(t, ok, "bundle has no spiffe_sequence")
	return n
}

var authorityIDRe = regexp.MustCompile(`Prepared X.509 authority:\n  Authority ID: ([0-9a-f]+)`)

func TestServerLifecycle(t *testing.T) {
	s := newServer(t, "alpha.test", "")
	s.start()

	doc := s.treaty("bundle", "show", "-format", "spiffe")
	require.Contains(t, doc, `"spiffe_refresh_hint": 300`)
	require.Contains(t, doc, `"spiffe_sequence": 1`)
	b := parseSPIFFE(t, "alpha.test", doc)
	require.Len(t, b.X509Authorities(), 1)
	require.Len(t, b.JWTAuthorities(), 1)

	pemOut := s.treaty("bundle", "show")
	block, _ := pem.Decode([]byte(pemOut))
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	require.True(t, cert.Equal(b.X509Authorities()[0]))

	out := s.treaty("localauthority", "x509", "prepare")
	require.Contains(t, out, "Prepared X.509 authority:")
	b = parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
	require.Len(t, b.X509Authorities(), 2, "prepared authority is published")
	require.Equal(t, uint64(2), sequence(t, b))
	show := s.treaty("localauthority", "x509", "show")
	require.Regexp(t, authorityIDRe, show)

	// A restart changes nothing.
	before := s.treaty("bundle", "show", "-format", "spiffe")
	s.stop()
	s.start()
	require.Equal(t, before, s.treaty("bundle", "show", "-format", "spiffe"))
	require.Equal(t, show, s.treaty("localauthority", "x509", "show"))

	info, err := os.Stat(s.dataDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
	keys, err := filepath.Glob(filepath.Join(s.dataDir, "keys", "*.key.pem"))
	require.NoError(t, err)
	require.Len(t, keys, 3, "two X.509 keys and one JWT key")
	for _, k := range keys {
		info, err := os.Stat(k)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), k)
	}
}

func TestBundleSetExplainsBadInput(t *testing.T) {
	s := newServer(t, "alpha.test", "")
	s.start()
	partner := newServer(t, "beta.test", "")
	partner.start()
	partnerDoc := partner.treaty("bundle", "show", "-format", "spiffe")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}

	tests := []struct {
		name, path, format, id, want string
	}{
		{"fail/not json", write("a.json", "hello"), "spiffe", "spiffe://beta.test", "not a JSON object"},
		{"fail/no keys", write("b.json", `{"keys":[]}`), "spiffe", "spiffe://beta.test", "no usable keys"},
		{"fail/leaf only", write("c.json", leafBundle(t, "beta.test")), "spiffe", "spiffe://beta.test", "is not a CA certificate"},
		{"fail/pem without certificate", write("d.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "pem", "spiffe://beta.test", "PEM block 1 ignored: is a PUBLIC KEY; only CERTIFICATE blocks are used"},
		{"fail/json given as pem", write("e.json", partnerDoc), "pem", "spiffe://beta.test", "use -format spiffe"},
		{"fail/own trust domain", write("f.json", s.treaty("bundle", "show", "-format", "spiffe")), "spiffe", "spiffe://alpha.test", "own trust domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := s.treatyErr("bundle", "set", "-id", tt.id, "-path", tt.path, "-format", tt.format)
			require.Error(t, err)
			require.Contains(t, stderr, tt.want)
		})
	}
	require.Equal(t, "1 bundle\n", s.treaty("bundle", "count"), "failed sets store nothing")

	// SPIFFE Federation §5.1, Trust Domain and Bundle §3: the bundle belongs
	// to the trust domain it is set for, whatever its certificates name.
	_, stderr, err := s.treatyErr("bundle", "set", "-id", "spiffe://gamma.test", "-path", write("g.json", partnerDoc), "-format", "spiffe")
	require.NoError(t, err)
	require.Contains(t, stderr, `names trust domain "beta.test" in its URI SAN; it is kept as an authority of "gamma.test"`)
	require.Equal(t, "bundle deleted.\n", s.treaty("bundle", "delete", "-id", "spiffe://gamma.test"))

	require.Equal(t, "bundle set.\n", s.treaty("bundle", "set", "-id", "spiffe://beta.test", "-path", write("ok.json", partnerDoc), "-format", "spiffe"))
	require.Equal(t, "2 bundles\n", s.treaty("bundle", "count"))
	listed := s.treaty("bundle", "list", "-id", "spiffe://beta.test", "-format", "spiffe")
	require.True(t, parseSPIFFE(t, "beta.test", listed).Equal(parseSPIFFE(t, "beta.test", partnerDoc)))
	require.Equal(t, "bundle deleted.\n", s.treaty("bundle", "delete", "-id", "spiffe://beta.test"))
	require.Equal(t, "1 bundle\n", s.treaty("bundle", "count"))
}

func TestServerRunsWithoutConfigFile(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "treaty-e2e") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	defer os.RemoveAll(sockDir)
	s := &server{t: t, td: "example.org", dataDir: filepath.Join(t.TempDir(), "data"), socket: filepath.Join(sockDir, "admin.sock")}
	s.args = []string{"server", "run", "-trustDomain", "example.org", "-dataDir", s.dataDir, "-socketPath", s.socket, "-workloadSocket", s.workload}
	s.start()
	b := parseSPIFFE(t, "example.org", s.treaty("bundle", "show", "-format", "spiffe"))
	require.Len(t, b.X509Authorities(), 1)
}

func TestBadConfigStartsNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("trust_domain: Bad Domain\ndata_dir: "+filepath.Join(dir, "data")+"\nca:\n  ca_ttl: 7x\n  colour: blue\n"), 0o600))
	_, stderr, err := runCmd(treatyBin, "server", "run", "-config", cfg)
	require.Error(t, err)
	require.Contains(t, stderr, "line 1")
	require.Contains(t, stderr, "line 4")
	require.Contains(t, stderr, "line 5")
	_, err = os.Stat(filepath.Join(dir, "data"))
	require.True(t, os.IsNotExist(err), "a bad config must not create the data directory")
}

func parseDoc(td, doc string) (*spiffebundle.Bundle, error) {
	return spiffebundle.Parse(spiffeid.RequireTrustDomainFromString(td), []byte(doc))
}

// leafBundle is a bundle of td whose only x509-svid entry is a leaf
// certificate, which a client ignores (SPIFFE X509-SVID §4.1).
func leafBundle(t *testing.T, td string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	id, err := url.Parse("spiffe://" + td + "/workload")
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), URIs: []*url.URL{id}, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := make([]byte, 32), make([]byte, 32)
	key.X.FillBytes(x)
	key.Y.FillBytes(y)
	return fmt.Sprintf(`{"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x":%q,"y":%q,"x5c":[%q]}]}`, b64(x), b64(y), base64.StdEncoding.EncodeToString(der))
}
