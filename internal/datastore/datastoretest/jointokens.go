package datastoretest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// A join token is gone once consumed, whether it had expired or not: the
// caller checks the expiry after the delete.
func (x suite) testConsumeJoinTokenOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expires time.Time
	}{
		{"ok/valid token used once", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"ok/expired token deleted too", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := x.openStore(t)
			ctx := t.Context()
			want := datastore.JoinToken{Token: "3f1c9a", ExpiresAt: tc.expires}
			require.NoError(t, s.CreateJoinToken(ctx, want))
			s = reopen(t, s, path)
			got, err := s.ConsumeJoinToken(ctx, want.Token)
			require.NoError(t, err)
			require.Equal(t, want, got)
			_, err = s.ConsumeJoinToken(ctx, want.Token)
			require.ErrorIs(t, err, datastore.ErrNotFound)

			s = reopen(t, s, path)
			_, err = s.ConsumeJoinToken(ctx, want.Token)
			require.ErrorIs(t, err, datastore.ErrNotFound)
		})
	}
}

func (x suite) testJoinTokenErrors(t *testing.T) {
	expires := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	stored := datastore.JoinToken{Token: "3f1c9a", ExpiresAt: expires}
	for _, tc := range []struct {
		name    string
		call    func(context.Context, datastore.Store) error
		want    error
		wantMsg string
	}{
		{name: "fail/create existing", call: func(ctx context.Context, s datastore.Store) error {
			return s.CreateJoinToken(ctx, datastore.JoinToken{Token: stored.Token, ExpiresAt: expires.Add(time.Hour)})
		}, want: datastore.ErrAlreadyExists},
		{name: "fail/consume unknown", call: func(ctx context.Context, s datastore.Store) error {
			_, err := s.ConsumeJoinToken(ctx, "unknown")
			return err
		}, want: datastore.ErrNotFound},
		{name: "fail/create without token", call: func(ctx context.Context, s datastore.Store) error {
			return s.CreateJoinToken(ctx, datastore.JoinToken{ExpiresAt: expires})
		}, wantMsg: "a token and its expiry are required"},
		{name: "fail/create without expiry", call: func(ctx context.Context, s datastore.Store) error {
			return s.CreateJoinToken(ctx, datastore.JoinToken{Token: "other"})
		}, wantMsg: "a token and its expiry are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := x.openStore(t)
			require.NoError(t, s.CreateJoinToken(t.Context(), stored))
			err := tc.call(t.Context(), s)
			require.Error(t, err)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
			require.ErrorContains(t, err, tc.wantMsg)
			require.NotContains(t, err.Error(), stored.Token, "a token is a secret")
			got, err := s.ConsumeJoinToken(t.Context(), stored.Token)
			require.NoError(t, err)
			require.Equal(t, stored, got, "the stored token is unchanged")
		})
	}
}

// Of many agents racing with the same token, one attests.
func (x suite) testConsumeJoinTokenConcurrently(t *testing.T) {
	s, _ := x.openStore(t)
	ctx := t.Context()
	require.NoError(t, s.CreateJoinToken(ctx, datastore.JoinToken{Token: "race", ExpiresAt: time.Now().Add(time.Hour)}))
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = s.ConsumeJoinToken(ctx, "race") })
	}
	wg.Wait()
	var won int
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, datastore.ErrNotFound)
	}
	require.Equal(t, 1, won)
}

// Pruning deletes the tokens that expired strictly before the given time.
func (x suite) testPruneJoinTokens(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tokens := []struct {
		name    string
		expires time.Time
		pruned  bool
	}{
		{"ok/long expired is pruned", now.Add(-48 * time.Hour), true},
		{"ok/just expired is pruned", now.Add(-time.Nanosecond), true},
		{"ok/expiring now is kept", now, false},
		{"ok/valid is kept", now.Add(time.Hour), false},
	}
	for _, tc := range tokens {
		require.NoError(t, s.CreateJoinToken(ctx, datastore.JoinToken{Token: tc.name, ExpiresAt: tc.expires}))
	}
	n, err := s.PruneJoinTokens(ctx, now)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = s.PruneJoinTokens(ctx, now)
	require.NoError(t, err)
	require.Zero(t, n, "nothing left to prune")

	s = reopen(t, s, path)
	for _, tc := range tokens {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ConsumeJoinToken(t.Context(), tc.name)
			if tc.pruned {
				require.ErrorIs(t, err, datastore.ErrNotFound)
				return
			}
			require.NoError(t, err)
		})
	}
}
