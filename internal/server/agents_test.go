package server

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

func TestServesAgentAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.AgentAPI.Address = "127.0.0.1:0"
	s := runServer(t, cfg)
	// As an agent does before attesting: the server must be
	// spiffe://<td>/spire/server, chaining to our bundle.
	serverID := spiffeid.RequireFromPath(cfg.TrustDomain, "/spire/server")
	tlsCfg := tlsconfig.TLSClientConfig(s.ca.Bundle(), tlsconfig.AuthorizeID(serverID))
	conn, err := grpc.NewClient("passthrough:///"+s.agentsListener.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	require.NoError(t, err)
	defer conn.Close()
	b, err := bundlev1.NewBundleClient(conn).GetBundle(t.Context(), &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	require.Equal(t, cfg.TrustDomain.Name(), b.GetTrustDomain())
}

func TestAgentAPIStartUpProblems(t *testing.T) {
	var lc net.ListenConfig
	busy, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	tests := []struct {
		name    string
		address string
		caFile  string
		want    string
	}{
		{"fail/port in use", busy.Addr().String(), "", "agent API: listen on"},
		{"fail/missing node CA bundle", "127.0.0.1:0", filepath.Join(t.TempDir(), "missing.pem"), "agent_api.x509pop.ca_bundle_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.AgentAPI.Address, cfg.AgentAPI.X509POP.CABundlePath = tt.address, tt.caFile
			_, err := New(t.Context(), cfg, nil)
			require.ErrorContains(t, err, tt.want)
			_, err = os.Stat(cfg.AdminSocket)
			require.True(t, os.IsNotExist(err), "the admin socket is closed again")
		})
	}
}

// TestAgentStatusSurfaces checks that the agent API feeds /metrics and the
// dashboard, and that without it neither shows agents.
func TestAgentStatusSurfaces(t *testing.T) {
	for _, tc := range []struct {
		name   string
		agents bool
	}{{"ok/agent API on", true}, {"ok/agent API off", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Telemetry.Address, cfg.Telemetry.Dashboard = "127.0.0.1:0", true
			if tc.agents {
				cfg.AgentAPI.Address = "127.0.0.1:0"
			}
			s := runServer(t, cfg)
			base := "http://" + s.telemetryListener.Addr().String()
			metrics, page := httpBody(t, base+"/metrics"), httpBody(t, base+"/dashboard")
			require.Equal(t, tc.agents, strings.Contains(metrics, `treaty_agents{state="active"} 0`), metrics)
			require.Equal(t, tc.agents, strings.Contains(metrics, `treaty_agent_svids_issued_total{kind="x509"} 0`))
			require.Equal(t, tc.agents, strings.Contains(page, `<table id="agents">`))
		})
	}
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	return string(body)
}
