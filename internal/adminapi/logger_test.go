package adminapi

import (
	"crypto/x509"
	"log/slog"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	debugv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/debug/v1"
	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
)

// TestLoggerService: the Logger API reads and changes the level of the
// running server's log, and resets it to the level it started with.
func TestLoggerService(t *testing.T) {
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	conn, _ := startWith(t, func(c *Config) { c.LogLevel = level })
	client := loggerv1.NewLoggerClient(conn)
	ctx := t.Context()

	got, err := client.GetLogger(ctx, &loggerv1.GetLoggerRequest{})
	require.NoError(t, err)
	require.Equal(t, types.LogLevel_WARN, got.GetCurrentLevel())
	require.Equal(t, types.LogLevel_WARN, got.GetLaunchLevel())

	for _, l := range []types.LogLevel{types.LogLevel_TRACE, types.LogLevel_DEBUG, types.LogLevel_INFO, types.LogLevel_ERROR, types.LogLevel_FATAL, types.LogLevel_PANIC} {
		got, err = client.SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{NewLevel: l})
		require.NoError(t, err)
		require.Equal(t, l, got.GetCurrentLevel(), "a level set reads back as itself")
		require.Equal(t, types.LogLevel_WARN, got.GetLaunchLevel())
	}
	_, err = client.SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{NewLevel: types.LogLevel_DEBUG})
	require.NoError(t, err)
	require.Equal(t, slog.LevelDebug, level.Level(), "the server's log follows")

	_, err = client.SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	got, err = client.ResetLogLevel(ctx, &loggerv1.ResetLogLevelRequest{})
	require.NoError(t, err)
	require.Equal(t, types.LogLevel_WARN, got.GetCurrentLevel())
	require.Equal(t, slog.LevelWarn, level.Level())
}

// TestDebugService: GetInfo counts what the store holds and how long the
// server has run.
func TestDebugService(t *testing.T) {
	conn, _ := startWith(t, func(c *Config) {
		c.Entries, c.Agents = c.Store.(*sqlite.Store), c.Store.(*sqlite.Store)
		mint := c.SVIDs.(*ca.CA)
		c.ServerSVID = func() []*x509.Certificate {
			svid, err := mint.MintX509SVID(spiffeid.RequireFromPath(td, "/spire/server"))
			require.NoError(t, err)
			return svid.Certificates
		}
	})
	info, err := debugv1.NewDebugClient(conn).GetInfo(t.Context(), &debugv1.GetInfoRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(1), info.GetFederatedBundlesCount(), "our own bundle, as SPIRE counts it")
	require.Zero(t, info.GetEntriesCount())
	require.Zero(t, info.GetAgentsCount())
	require.GreaterOrEqual(t, info.GetUptime(), int32(0))
	chain := info.GetSvidChain()
	require.Len(t, chain, 2, "the server's SVID up to our root, as SPIRE shows it")
	require.Equal(t, "/spire/server", chain[0].GetId().GetPath())
	require.Equal(t, "alpha.test", chain[1].GetId().GetTrustDomain(), "the root carries the trust domain ID")
}
