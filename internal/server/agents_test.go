package server

import (
	"net"
	"os"
	"path/filepath"
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
