package federation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A server restarted during a partner's outage still knows when the partner
// last answered: the records are saved as Run stops (and every
// savePollsEvery), and the next refresher on the store starts from them.
func TestPollRecordsSurviveARestart(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	env.r.cfg.Polls = env.store
	ctx := t.Context()
	env.fetcher.push(partnerBundle(t, 2), nil)
	require.NoError(t, env.r.Refresh(ctx, partner))
	succeeded := env.now
	env.now = env.now.Add(time.Minute)
	env.fetcher.push(nil, errors.New("connection refused"))
	require.Error(t, env.r.Refresh(ctx, partner))

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- env.r.Run(runCtx) }()
	stop()
	require.NoError(t, <-done)

	restarted := NewRefresher(RefresherConfig{Store: env.store, Fetcher: env.fetcher, Polls: env.store, Now: func() time.Time { return env.now }})
	require.NoError(t, restarted.Reload(ctx))
	st := restarted.Status()
	require.Len(t, st, 1)
	require.True(t, succeeded.Equal(st[0].LastSuccess), "last success survives the restart: %v", st[0].LastSuccess)
	require.Equal(t, 1, st[0].ConsecutiveFailures)
	require.Contains(t, st[0].LastError, "connection refused")
	require.Equal(t, StateFailing, st[0].State)

	// Without Polls nothing is remembered, as before.
	forgetful := NewRefresher(RefresherConfig{Store: env.store, Fetcher: env.fetcher, Now: func() time.Time { return env.now }})
	require.NoError(t, forgetful.Reload(ctx))
	require.True(t, forgetful.Status()[0].LastSuccess.IsZero())
}
