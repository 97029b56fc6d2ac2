package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/datastore"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "treaty-server") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	cfg, err := config.Build("", config.Overrides{
		TrustDomain: "alpha.test", DataDir: filepath.Join(t.TempDir(), "data"), AdminSocket: filepath.Join(sockDir, "admin.sock"),
	})
	require.NoError(t, err)
	cfg.WorkloadSocket = filepath.Join(sockDir, "public", "workload.sock")
	return cfg
}

func TestNewFailsCleanly(t *testing.T) {
	cfg := testConfig(t)
	cfg.CA.Upstream = &config.Upstream{CertFile: filepath.Join(t.TempDir(), "missing.pem"), KeyFile: "missing.key"}
	_, err := New(t.Context(), cfg, nil)
	require.ErrorContains(t, err, "ca.upstream")
	_, err = os.Stat(cfg.AdminSocket)
	require.True(t, os.IsNotExist(err), "no admin socket after a failed start")

	// The lock was released: a correct configuration starts on the same
	// data directory.
	cfg.CA.Upstream = nil
	s, err := New(t.Context(), cfg, nil)
	require.NoError(t, err)
	s.close()
}

func TestDataDirectoryIsExclusive(t *testing.T) {
	cfg := testConfig(t)
	runServer(t, cfg)

	other := *cfg
	other.AdminSocket = cfg.AdminSocket + ".2"
	_, err := New(t.Context(), &other, nil)
	require.ErrorContains(t, err, "in use by another treaty server")
}

func TestWarnsAboutReadableDataDirectory(t *testing.T) {
	cfg := testConfig(t)
	require.NoError(t, os.MkdirAll(cfg.DataDir, 0o755))
	require.NoError(t, os.Chmod(cfg.DataDir, 0o755))
	var logs bytes.Buffer
	s, err := New(t.Context(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	s.close()
	require.Contains(t, logs.String(), "DATA DIRECTORY IS READABLE BY OTHER USERS")
}

func TestServesWorkloadAPI(t *testing.T) {
	cfg := testConfig(t)
	runServer(t, cfg)
	// No entry matches this process yet: the API answers, and says why.
	_, err := workloadapi.FetchX509SVID(t.Context(), workloadapi.WithAddr("unix://"+cfg.WorkloadSocket))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "no registration entry matches")
}

func TestTelemetry(t *testing.T) {
	cfg := testConfig(t)
	cfg.Telemetry.Address = "127.0.0.1:0"
	cfg.BundleEndpoint.Address = "127.0.0.1:0"
	s := runServer(t, cfg)
	base := "http://" + s.telemetryListener.Addr().String()
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok", "/metrics": "go_goroutines"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, string(body), want, path)
	}
}

func TestEndpointPortInUseStopsStartUp(t *testing.T) {
	var lc net.ListenConfig
	busy, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	cfg := testConfig(t)
	cfg.BundleEndpoint.Address = busy.Addr().String()
	_, err = New(t.Context(), cfg, nil)
	require.ErrorContains(t, err, "bundle endpoint: listen on")
	_, err = os.Stat(cfg.AdminSocket)
	require.True(t, os.IsNotExist(err), "the admin socket is closed again")
}

// TestEndpointFollowsQuickChanges prepares and activates authorities in
// quick succession; the bundle endpoint must serve every prepared authority.
// (It once missed a change that landed while it was reading the previous
// one.)
func TestEndpointFollowsQuickChanges(t *testing.T) {
	cfg := testConfig(t)
	cfg.BundleEndpoint.Address = "127.0.0.1:0"
	s := runServer(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // only the body matters here
	defer client.CloseIdleConnections()
	url := "https://" + s.endpointListener.Addr().String()
	for range 15 {
		prepared, err := s.CA().Prepare(t.Context(), datastore.KindX509)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
			require.NoError(t, err)
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			b, err := spiffebundle.Parse(cfg.TrustDomain, body)
			require.NoError(t, err)
			for _, c := range b.X509Authorities() {
				if hex.EncodeToString(c.SubjectKeyId) == prepared.ID {
					return true
				}
			}
			return false
		}, 5*time.Second, 5*time.Millisecond, "prepared authority %s never served", prepared.ID)
		_, _, err = s.CA().Activate(t.Context(), datastore.KindX509, prepared.ID)
		require.NoError(t, err)
	}
}

// TestEndpointNeverLeaksKeys fetches the published bundle and searches it
// for every private key the server holds, in every encoding a leak could
// take, and for JWK private members.
func TestEndpointNeverLeaksKeys(t *testing.T) {
	cfg := testConfig(t)
	cfg.BundleEndpoint.Address = "127.0.0.1:0"
	s := runServer(t, cfg)
	_, err := s.CA().Prepare(t.Context(), datastore.KindJWT) // a second key of each kind
	require.NoError(t, err)
	_, err = s.CA().Prepare(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // only the body matters here
	defer client.CloseIdleConnections()
	var body string
	require.Eventually(t, func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+s.endpointListener.Addr().String(), nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		body = string(data)
		return strings.Count(body, `"use":`) >= 4
	}, 5*time.Second, 10*time.Millisecond, "the prepared keys are published")

	for _, member := range []string{`"d":`, `"p":`, `"q":`, `"dp":`, `"dq":`, `"qi":`, `"k":`, "PRIVATE KEY"} {
		require.NotContains(t, body, member)
	}
	files, err := filepath.Glob(filepath.Join(cfg.DataDir, "keys", "*"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 4)
	for _, f := range files {
		pemData, err := os.ReadFile(f)
		require.NoError(t, err)
		block, _ := pem.Decode(pemData)
		require.NotNil(t, block, f)
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		require.NoError(t, err)
		ec, ok := key.(*ecdsa.PrivateKey)
		require.True(t, ok, "default keys are EC")
		d, err := ec.Bytes()
		require.NoError(t, err)
		for _, enc := range []string{base64.RawURLEncoding.EncodeToString(d), base64.StdEncoding.EncodeToString(d), hex.EncodeToString(d), base64.StdEncoding.EncodeToString(block.Bytes)} {
			require.NotContains(t, body, enc, "private key of %s served", filepath.Base(f))
		}
	}
}

// runServer starts a server from cfg and stops it when the test ends.
func runServer(t *testing.T, cfg *config.Config) *Server {
	t.Helper()
	s, err := New(t.Context(), cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return s
}
