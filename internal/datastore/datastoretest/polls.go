package datastoretest

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// A partner's poll record survives a reopen, and a later save replaces it.
func (x suite) testPollRecords(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	none, err := s.ListPollRecords(ctx)
	require.NoError(t, err)
	require.Empty(t, none)
	require.NoError(t, s.SavePollRecords(ctx, nil))

	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	beta := datastore.PollRecord{TrustDomain: spiffeid.RequireTrustDomainFromString("beta.test"), LastAttempt: t0, LastSuccess: t0}
	gamma := datastore.PollRecord{TrustDomain: spiffeid.RequireTrustDomainFromString("gamma.test"), LastAttempt: t0,
		ConsecutiveFailures: 3, LastError: "nothing listens on 127.0.0.1:1", LastReason: "connection_refused"}
	require.NoError(t, s.SavePollRecords(ctx, []datastore.PollRecord{gamma, beta}))
	failing := beta
	failing.LastAttempt, failing.ConsecutiveFailures, failing.LastError, failing.LastReason = t0.Add(time.Minute), 1, "timeout", "timeout"
	require.NoError(t, s.SavePollRecords(ctx, []datastore.PollRecord{failing}))

	s = reopen(t, s, path)
	got, err := s.ListPollRecords(ctx)
	require.NoError(t, err)
	require.Equal(t, []datastore.PollRecord{failing, gamma}, got, "last success kept through a failure and a reopen")
}
