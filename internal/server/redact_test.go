package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/syncbuf"
)

// syncBuffer is a buffer a logger or a process may write while the test reads it.
type syncBuffer = syncbuf.Buffer

// runStarted runs a server made by New and stops it when the test ends.
func runStarted(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// TestStoredUserinfoIsNeverShown starts a server on a database that holds
// a relationship stored before userinfo in endpoint URLs was refused: its
// password appears nowhere (federation list, status, the dashboard, the
// log), and the refresher refuses to use it.
func TestStoredUserinfoIsNeverShown(t *testing.T) {
	const password = "s3cr3t-pw"
	cfg := testConfig(t)
	cfg.Telemetry.Address, cfg.Telemetry.Dashboard = "127.0.0.1:0", true
	require.NoError(t, os.MkdirAll(cfg.DataDir, 0o700))
	store, err := sqlite.Open(t.Context(), filepath.Join(cfg.DataDir, DatabaseFile))
	require.NoError(t, err)
	_, err = store.CreateRelationship(t.Context(), datastore.Relationship{
		TrustDomain: spiffeid.RequireTrustDomainFromString("old.test"), EndpointURLs: []string{"https://admin:" + password + "@127.0.0.1:1/bundle"},
		Profile: string(profile.HTTPSWeb), CreatedAt: time.Now(), UpdatedAt: time.Now(),
	}, nil)
	require.NoError(t, err)
	require.NoError(t, store.Close())

	logs := &syncBuffer{}
	s, err := New(t.Context(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	runStarted(t, s)
	require.Eventually(t, func() bool {
		st := s.refresher.Status()
		return len(st) == 1 && !st[0].LastAttempt.IsZero()
	}, 10*time.Second, 10*time.Millisecond, "the refresher polls the relationship")

	conn, err := grpc.NewClient("unix://"+cfg.AdminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	list, err := trustdomainv1.NewTrustDomainClient(conn).ListFederationRelationships(t.Context(), &trustdomainv1.ListFederationRelationshipsRequest{})
	require.NoError(t, err)
	require.Equal(t, "https://admin:xxxxx@127.0.0.1:1/bundle", list.GetFederationRelationships()[0].GetBundleEndpointUrl())

	var status structpb.Struct
	require.NoError(t, conn.Invoke(t.Context(), adminwire.StatusMethod, &emptypb.Empty{}, &status))
	rel := status.GetFields()["relationships"].GetListValue().GetValues()[0].GetStructValue().GetFields()
	require.Equal(t, "https://admin:xxxxx@127.0.0.1:1/bundle", rel["endpoint"].GetStringValue())
	require.Equal(t, string(federation.ReasonConfig), rel["last_reason"].GetStringValue())
	require.Contains(t, rel["last_error"].GetStringValue(), "must not hold a user name or password")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+s.telemetryListener.Addr().String()+"/dashboard", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Contains(t, string(page), "admin:xxxxx@127.0.0.1:1")

	for where, text := range map[string]string{"list": list.String(), "status": status.String(), "dashboard": string(page), "log": logs.String()} {
		require.NotContains(t, text, password, "the password shows in the %s", where)
	}
}
