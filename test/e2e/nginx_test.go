package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// nginxBinary finds Debian's nginx, or skips (fails under TREATY_E2E=1).
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("TREATY_NGINX"), "/usr/sbin/nginx"} {
		if c != "" {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	msg := "nginx not found: install Debian's nginx-light and libnginx-mod-stream (or set TREATY_NGINX)"
	if strict {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startNGINX runs nginx in the foreground with body as the configuration
// (events, http and stream blocks), in a temporary prefix, on loopback.
func startNGINX(t *testing.T, body string) {
	t.Helper()
	bin := nginxBinary(t)
	prefix := t.TempDir()
	head := "daemon off;\nmaster_process off;\nerror_log stderr info;\npid " + filepath.Join(prefix, "nginx.pid") + ";\n"
	if os.Geteuid() == 0 {
		head += "user root;\n" // workers must read the test's 0600 key files
	}
	if strings.Contains(body, "stream {") {
		const module = "/usr/lib/nginx/modules/ngx_stream_module.so"
		if _, err := os.Stat(module); err == nil {
			head = "load_module " + module + ";\n" + head
		}
	}
	conf := filepath.Join(prefix, "nginx.conf")
	require.NoError(t, os.WriteFile(conf, []byte(head+"events {}\n"+body), 0o600))
	log := &syncBuffer{}
	test := exec.CommandContext(t.Context(), bin, "-t", "-p", prefix, "-c", conf)
	test.Stdout, test.Stderr = log, log
	require.NoError(t, test.Run(), "nginx rejects the configuration:\n%s\n%s", log, head+body)
	cmd := exec.CommandContext(context.Background(), bin, "-p", prefix, "-c", conf)
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
}

// httpTemps keeps nginx's temporary files inside the test prefix.
const httpTemps = "  client_body_temp_path tmp_body;\n  proxy_temp_path tmp_proxy;\n  fastcgi_temp_path tmp_fastcgi;\n  uwsgi_temp_path tmp_uwsgi;\n  scgi_temp_path tmp_scgi;\n  access_log off;\n"

// TestNGINX puts NGINX in front of treaty's bundle endpoint in the two
// shapes federation guides describe, and checks what a partner sees when
// the shape and the relationship's profile do not match.
func TestNGINX(t *testing.T) {
	pki := newWebPKI(t)
	webCert, webKey := pki.serverCert(t, "alpha-backend")
	frontCert, frontKey := pki.serverCert(t, "front")
	ingressCert, ingressKey := pki.serverCertFor(t, "ingress", "ingress.local")

	webAddr, spiffeAddr := freePort(t), freePort(t)
	alphaWeb := newServer(t, "alpha.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_web\n  web:\n    cert_file: %s\n    key_file: %s\n"+
		"  client_certificate_header: X-SPIFFE-Client-Cert\n  trusted_proxies: [127.0.0.1]\n", webAddr, webCert, webKey))
	alphaWeb.start()
	alphaSPIFFE := newServer(t, "alpha2.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n", spiffeAddr))
	alphaSPIFFE.start()

	termAddr, passAddr, defaultAddr := freePort(t), freePort(t), freePort(t)
	// The shipped configurations, pointed at this test's ports and files.
	termination := deployConfig(t, "https_web-termination.conf", strings.NewReplacer(
		"listen 443 ssl;", "listen "+termAddr+" ssl;",
		"127.0.0.1:8443", webAddr,
		"/etc/nginx/tls/bundle.example.com.crt", frontCert,
		"/etc/nginx/tls/bundle.example.com.key", frontKey,
		"/etc/nginx/tls/backend-ca.pem", pki.caFile,
		"proxy_ssl_name bundle.example.com;", "proxy_ssl_name localhost;",
		"bundle.example.com", "localhost",
	))
	passthrough := deployConfig(t, "https_spiffe-passthrough.conf", strings.NewReplacer(
		"listen 443;", "listen "+passAddr+";",
		"127.0.0.1:8443", spiffeAddr,
		"bundle.example.com", "localhost",
	))
	// A catch-all server with a certificate for another name, as ingress
	// controllers ship by default.
	catchAll := fmt.Sprintf("  server {\n    listen %s ssl default_server;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n    location / { return 404; }\n  }\n",
		defaultAddr, ingressCert, ingressKey)
	termination = strings.Replace(termination, "http {\n", "http {\n"+httpTemps+catchAll, 1)
	startNGINX(t, termination+passthrough)

	beta := newServer(t, "beta.test", fmt.Sprintf("federation:\n  ca_file: %s\n  min_refresh: 1s\n", pki.caFile))
	beta.start()
	dir := t.TempDir()
	alpha2Doc := filepath.Join(dir, "alpha2.json") // bootstrap for the passthrough case
	require.NoError(t, os.WriteFile(alpha2Doc, []byte(alphaSPIFFE.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

	t.Run("ok/https_web behind TLS termination", func(t *testing.T) {
		beta.treaty("federation", "create", "-trustDomain", "alpha.test", "-bundleEndpointURL", "https://localhost:"+port(termAddr), "-bundleEndpointProfile", "https_web")
		waitStatus(t, beta, "alpha.test", func(st relationshipStatus) bool { return st.State == "healthy" })
		held := parseSPIFFE(t, "alpha.test", beta.treaty("bundle", "list", "-id", "spiffe://alpha.test", "-format", "spiffe"))
		require.True(t, held.Equal(parseSPIFFE(t, "alpha.test", alphaWeb.treaty("bundle", "show", "-format", "spiffe"))))
	})
	t.Run("ok/receipts through TLS termination", func(t *testing.T) {
		// Alpha holds beta's bundle, so beta's federation client SVID,
		// shown to NGINX and passed on in the header, authenticates beta:
		// alpha knows beta has its next authority.
		betaDoc := filepath.Join(dir, "beta.json")
		require.NoError(t, os.WriteFile(betaDoc, []byte(beta.treaty("bundle", "show", "-format", "spiffe")), 0o600))
		alphaWeb.treaty("bundle", "set", "-format", "spiffe", "-id", "spiffe://beta.test", "-path", betaDoc)
		alphaWeb.treaty("localauthority", "x509", "prepare")
		beta.treaty("federation", "refresh", "-id", "alpha.test")
		waitUntil(t, 10*time.Second, func() bool {
			n := nextAuthorityStatus(t, alphaWeb)
			return n != nil && len(n.Partners) == 1 && n.Partners[0].TrustDomain == "beta.test" && n.lacking() == ""
		}, "alpha has no receipt from beta through NGINX:\n"+alphaWeb.treaty("federation", "status"))
	})
	t.Run("ok/https_spiffe behind TLS passthrough", func(t *testing.T) {
		beta.treaty("federation", "create", "-trustDomain", "alpha2.test", "-bundleEndpointURL", "https://localhost:"+port(passAddr),
			"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://alpha2.test/spire/server",
			"-trustDomainBundlePath", alpha2Doc, "-trustDomainBundleFormat", "spiffe")
		waitStatus(t, beta, "alpha2.test", func(st relationshipStatus) bool { return st.State == "healthy" })
	})
	t.Run("fail/https_spiffe relationship behind a terminating proxy", func(t *testing.T) {
		// Switch the working relationship to https_spiffe while NGINX still
		// terminates TLS: beta holds alpha's bundle, so the fetch gets as
		// far as the certificate, which has no SPIFFE ID.
		beta.treaty("federation", "update", "-trustDomain", "alpha.test", "-bundleEndpointURL", "https://localhost:"+port(termAddr),
			"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://alpha.test/spire/server")
		_, stderr, err := beta.treatyErr("federation", "refresh", "-id", "alpha.test")
		require.Error(t, err)
		t.Logf("treaty says: %s", stderr)
		require.Contains(t, stderr, "no URI SAN")
		require.Contains(t, stderr, "https_web")
		require.Contains(t, stderr, "passthrough")
		st := federationStatus(t, beta, "alpha.test")
		require.Equal(t, "web_cert_on_spiffe", st.LastReason)
		require.NotZero(t, st.Sequence, "the last good bundle is kept")
	})
	t.Run("fail/wrong SNI hits the default certificate", func(t *testing.T) {
		beta.treaty("federation", "create", "-trustDomain", "delta.test", "-bundleEndpointURL", "https://localhost:"+port(defaultAddr), "-bundleEndpointProfile", "https_web")
		_, stderr, err := beta.treatyErr("federation", "refresh", "-id", "delta.test")
		require.Error(t, err)
		t.Logf("treaty says: %s", stderr)
		require.Contains(t, stderr, "ingress.local")
	})
}

// deployConfig reads a configuration shipped in deploy/nginx and adapts it
// with r; comment lines are dropped.
func deployConfig(t *testing.T, name string, r *strings.Replacer) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "nginx", name))
	require.NoError(t, err)
	var keep []string
	for line := range strings.SplitSeq(r.Replace(string(data)), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}
