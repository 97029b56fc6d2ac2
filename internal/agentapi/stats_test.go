package agentapi

import (
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatsCountsAgentCalls(t *testing.T) {
	e := startAPI(t)
	svid := e.attestJoinToken(t, "tok-1")
	_, _, err := attestWith(t, e.dial(t, nil), "join_token", []byte("tok-1"), nil)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a used token")
	_, _, err = attestWith(t, e.dial(t, nil), "tpm_devid", []byte("x"), nil)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "no such attestor")
	require.NoError(t, postStatus(t, e, svid))

	st := e.srv.Stats()
	require.Equal(t, map[string]uint64{ResultOK: 1, ResultDenied: 1, ResultInvalid: 0, ResultError: 0}, st.Attestations["join_token"])
	require.Equal(t, uint64(1), st.Attestations[UnknownAttestor][ResultInvalid], "an agent-chosen type is not a label")
	require.NotContains(t, st.Attestations, "tpm_devid")
	require.Equal(t, uint64(1), st.AgentSVIDs)
	require.False(t, e.srv.LastSeen(svid.ID).IsZero())
	require.WithinDuration(t, time.Now(), e.srv.LastSeen(svid.ID), time.Minute)

	require.NoError(t, e.store.DeleteAttestedNode(t.Context(), svid.ID))
	require.Error(t, postStatus(t, e, svid))
	require.True(t, e.srv.LastSeen(svid.ID).IsZero(), "an evicted agent is forgotten")
}

func TestStatsSyncHistogram(t *testing.T) {
	st := newStats(nil, time.Unix(0, 0))
	st.synced(2 * time.Millisecond)
	st.synced(time.Second)
	st.synced(time.Minute)
	h := st.snapshot().Syncs
	require.Equal(t, uint64(3), h.Count)
	require.InDelta(t, 61.002, h.SumSeconds, 1e-9)
	require.Len(t, h.Buckets, len(SyncBuckets))
	require.Equal(t, uint64(0), h.Buckets[0], "<= 1 ms")
	require.Equal(t, uint64(1), h.Buckets[1], "<= 5 ms")
	require.Equal(t, uint64(2), h.Buckets[6], "<= 1 s")
	require.Equal(t, uint64(2), h.Buckets[len(SyncBuckets)-1], "a minute is beyond the last bucket")
}

func TestStatsResultOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"ok", nil, ResultOK},
		{"denied", status.Error(codes.PermissionDenied, "no"), ResultDenied},
		{"invalid", status.Error(codes.InvalidArgument, "no"), ResultInvalid},
		{"error/status", status.Error(codes.Internal, "no"), ResultError},
		{"error/plain", errors.New("eof"), ResultError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, results[resultIndex(tc.err)])
		})
	}
}

// BenchmarkStatsSeen measures the cost every authorized agent call pays.
func BenchmarkStatsSeen(b *testing.B) {
	st := newStats(nil, time.Now())
	id := spiffeid.RequireFromString("spiffe://agents.test/spire/agent/x509pop/abc")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		st.seen(id, now)
	}
}
