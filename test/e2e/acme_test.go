package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const pebbleVersion = "v2.10.1"

// pebbleDir finds the binaries built by tools/pebble/build.sh.
func pebbleDir(t *testing.T) string {
	t.Helper()
	dirs := []string{os.Getenv("TREATY_PEBBLE_DIR")}
	if cache, err := os.UserCacheDir(); err == nil {
		dirs = append(dirs, filepath.Join(cache, "treaty", "pebble-"+pebbleVersion))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pebble")); err == nil {
			return d
		}
	}
	msg := "pebble not found: build it with tools/pebble/build.sh (or set TREATY_PEBBLE_DIR)"
	if strict {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startProcess runs a helper program until the test ends.
func startProcess(t *testing.T, env []string, bin string, args ...string) *syncBuffer {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.CommandContext(context.Background(), bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	return log
}

// selfSigned writes a certificate for 127.0.0.1 and returns the files and
// a pool that trusts it: Pebble's own API certificate.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble api"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "api.pem"), filepath.Join(dir, "api.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// httpsGet fetches url trusting roots, for at most 20 seconds of retries.
func httpsGet(t *testing.T, url string, roots *x509.CertPool) []byte {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	var body []byte
	waitFor(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == http.StatusOK
	}, "no answer from "+url)
	return body
}

// endpointCert connects to addr as a partner would to domain, verifying the
// chain against roots and the name, and returns the served leaf.
func endpointCert(t *testing.T, addr, domain string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	d := tls.Dialer{Config: &tls.Config{ServerName: domain, RootCAs: roots, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// TestACMEWithPebble obtains the https_web endpoint certificate from a real
// Pebble over tls-alpn-01, checks it as a partner would (web PKI with
// Pebble's root, host name), and watches it renew while being served.
func TestACMEWithPebble(t *testing.T) {
	dir := pebbleDir(t)
	work := t.TempDir()
	apiAddr, mgmtAddr, dnsAddr, challAddr, endpointAddr := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	_, tlsPort, err := net.SplitHostPort(endpointAddr)
	require.NoError(t, err)
	apiCert, apiKey, apiPool := selfSigned(t, work)

	startProcess(t, nil, filepath.Join(dir, "pebble-challtestsrv"), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", dnsAddr, "-management", challAddr, "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": apiAddr, "managementListenAddress": mgmtAddr, "certificate": apiCert, "privateKey": apiKey,
		"httpPort": 1, "tlsPort": json.Number(tlsPort), "ocspResponderURL": "", "externalAccountBindingRequired": false,
		"profiles": map[string]any{"default": map[string]any{"description": "short-lived, to exercise renewal", "validityPeriod": 40}},
	}}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	cfgFile := filepath.Join(work, "pebble.json")
	require.NoError(t, os.WriteFile(cfgFile, raw, 0o600))
	pebbleLog := startProcess(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		filepath.Join(dir, "pebble"), "-config", cfgFile, "-dnsserver", dnsAddr)
	httpsGet(t, "https://"+apiAddr+"/dir", apiPool)
	rootPEM := httpsGet(t, "https://"+mgmtAddr+"/roots/0", apiPool)
	pebbleRoots := x509.NewCertPool()
	require.True(t, pebbleRoots.AppendCertsFromPEM(rootPEM))

	const domain = "bundle.alpha.test"
	alpha := newServer(t, "alpha.test", fmt.Sprintf(`bundle_endpoint:
  address: %s
  profile: https_web
  web:
    acme:
      directory_url: https://%s/dir
      domain_name: %s
      email: ops@alpha.test
      tos_accepted: true
      ca_file: %s
      renew_before: 25s
`, endpointAddr, apiAddr, domain, apiCert))
	alpha.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("treaty log:\n%s\npebble log:\n%s", alpha.log, pebbleLog)
		}
	})

	var first *x509.Certificate
	waitFor(t, func() bool {
		d := tls.Dialer{Config: &tls.Config{ServerName: domain, RootCAs: pebbleRoots, MinVersion: tls.VersionTLS12}}
		conn, err := d.DialContext(t.Context(), "tcp", endpointAddr)
		if err != nil {
			return false
		}
		first = conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
		_ = conn.Close()
		return true
	}, "no ACME certificate served")
	require.Equal(t, []string{domain}, first.DNSNames)
	t.Logf("issued by %q, valid until %s", first.Issuer.CommonName, first.NotAfter.Format(time.RFC3339))

	// A partner checks the endpoint with web PKI (Pebble's root) and the
	// host name, and gets our bundle.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pebbleRoots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer // the test domain resolves to the endpoint on loopback
			return d.DialContext(ctx, network, endpointAddr)
		},
	}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+domain+":"+tlsPort+"/", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.True(t, parseSPIFFE(t, "alpha.test", string(body)).Equal(parseSPIFFE(t, "alpha.test", alpha.treaty("bundle", "show", "-format", "spiffe"))))

	// A partner treaty validates the ACME certificate with Pebble's root as
	// its CA file; a CONNECT proxy resolves the test domain to loopback.
	rootFile := filepath.Join(work, "pebble-root.pem")
	require.NoError(t, os.WriteFile(rootFile, rootPEM, 0o600))
	beta := newServer(t, "beta.test", fmt.Sprintf("federation:\n  ca_file: %s\n  min_refresh: 1s\n", rootFile))
	beta.env = []string{"HTTPS_PROXY=" + startConnectProxy(t, map[string]string{domain: endpointAddr}), "NO_PROXY="}
	beta.start()
	beta.treaty("federation", "create", "-trustDomain", "alpha.test", "-bundleEndpointURL", "https://"+domain+":"+tlsPort, "-bundleEndpointProfile", "https_web")
	waitStatus(t, beta, "alpha.test", func(st relationshipStatus) bool { return st.State == "healthy" })

	// The status reports the certificate's expiry.
	require.Contains(t, alpha.treaty("federation", "status"), "Bundle endpoint certificate expires")

	// Renewal: a new certificate replaces the first one before it expires,
	// with no gap in service.
	waitFor(t, func() bool {
		cert := endpointCert(t, endpointAddr, domain, pebbleRoots)
		return cert.SerialNumber.Cmp(first.SerialNumber) != 0
	}, "the ACME certificate was not renewed")
	require.True(t, time.Now().Before(first.NotAfter), "renewed only after expiry")

	info, err := os.Stat(filepath.Join(alpha.dataDir, "acme"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
}
