package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	noTD := write("no-td.yaml", "data_dir: ./d\n")
	unknown := write("unknown.yaml", "data_dir: ./d\ncolour: blue\n")

	t.Run("ok/flags only", func(t *testing.T) {
		c, err := Build("", Overrides{TrustDomain: "example.org", DataDir: "rel", LogLevel: "debug"})
		require.NoError(t, err)
		require.Equal(t, "example.org", c.TrustDomain.Name())
		require.True(t, filepath.IsAbs(c.DataDir))
		require.Equal(t, slog.LevelDebug, c.LogLevel)
		require.Equal(t, "spiffe://example.org/spire/server", c.BundleEndpoint.EndpointSPIFFEID.String())
	})
	t.Run("ok/flag supplies the trust domain the file lacks", func(t *testing.T) {
		c, err := Build(noTD, Overrides{TrustDomain: "example.org", AdminSocket: "/tmp/x.sock"})
		require.NoError(t, err)
		require.Equal(t, "example.org", c.TrustDomain.Name())
		require.Equal(t, "/tmp/x.sock", c.AdminSocket)
	})
	t.Run("fail/no trust domain anywhere", func(t *testing.T) {
		_, err := Build(noTD, Overrides{})
		require.ErrorContains(t, err, "trust_domain is required")
	})
	t.Run("fail/file problems survive overrides", func(t *testing.T) {
		_, err := Build(unknown, Overrides{TrustDomain: "example.org"})
		require.ErrorContains(t, err, "line 2")
		require.ErrorContains(t, err, "colour")
	})
	t.Run("fail/bad flag values", func(t *testing.T) {
		_, err := Build("", Overrides{TrustDomain: "Not Valid"})
		require.ErrorContains(t, err, "-trustDomain")
		_, err = Build("", Overrides{TrustDomain: "example.org", LogLevel: "loud"})
		require.ErrorContains(t, err, "-logLevel")
	})
	t.Run("fail/missing file", func(t *testing.T) {
		_, err := Build(filepath.Join(dir, "none.yaml"), Overrides{TrustDomain: "example.org"})
		require.ErrorContains(t, err, "read config")
	})
}

func TestFederationRefreshClamp(t *testing.T) {
	c, err := Parse([]byte("trust_domain: a.test\nfederation:\n  min_refresh: 1s\n  max_refresh: 10m\n  ca_file: /etc/ca.pem\n"), "f.yaml")
	require.NoError(t, err)
	require.Equal(t, time.Second, c.Federation.MinRefresh)
	require.Equal(t, 10*time.Minute, c.Federation.MaxRefresh)
	require.Equal(t, "/etc/ca.pem", c.Federation.CAFile)
	_, err = Parse([]byte("trust_domain: a.test\nfederation:\n  min_refresh: 2h\n  max_refresh: 1h\n"), "f.yaml")
	require.ErrorContains(t, err, "line 3: federation.min_refresh")
}

func TestACMEConfig(t *testing.T) {
	const ok = "trust_domain: a.test\nbundle_endpoint:\n  address: 127.0.0.1:8443\n  profile: https_web\n  web:\n    acme:\n      directory_url: https://127.0.0.1:14000/dir\n      domain_name: bundle.a.test\n      tos_accepted: true\n      ca_file: /tmp/pebble.pem\n      renew_before: 1h\n"
	c, err := Parse([]byte(ok), "f.yaml")
	require.NoError(t, err)
	require.Equal(t, "bundle.a.test", c.BundleEndpoint.Web.ACME.DomainName)
	require.True(t, c.BundleEndpoint.Web.ACME.TOSAccepted)
	require.Equal(t, time.Hour, c.BundleEndpoint.Web.ACME.RenewBefore)

	bad := "trust_domain: a.test\nbundle_endpoint:\n  address: 127.0.0.1:8443\n  profile: https_web\n  web:\n    cert_file: x\n    acme:\n      directory_url: http://x\n      domain_name: 127.0.0.1\n      tos_accepted: yes\n"
	_, err = Parse([]byte(bad), "f.yaml")
	for _, want := range []string{"either acme or cert_file", "directory_url", "DNS name is required", `tos_accepted must be true or false, got "yes"`} {
		require.ErrorContains(t, err, want)
	}
}
