package datastoretest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// A lease has one holder at a time: taken when free, renewed by its
// holder, refused to others until it runs out, free again once released.
func (x suite) testLeases(t *testing.T) {
	s, _ := x.openStore(t)
	ctx := t.Context()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const ttl = 10 * time.Second
	take := func(holder string, at time.Time) bool {
		t.Helper()
		held, err := s.AcquireLease(ctx, "poll:beta.test", holder, at, ttl)
		require.NoError(t, err)
		return held
	}
	_, err := s.Lease(ctx, "poll:beta.test")
	require.ErrorIs(t, err, datastore.ErrNotFound)

	require.True(t, take("a", t0), "a free lease is taken")
	require.False(t, take("b", t0.Add(time.Second)), "held by a")
	require.True(t, take("a", t0.Add(5*time.Second)), "its holder renews it")
	require.False(t, take("b", t0.Add(14*time.Second)), "the renewal counts from its own time")
	l, err := s.Lease(ctx, "poll:beta.test")
	require.NoError(t, err)
	require.Equal(t, datastore.Lease{Name: "poll:beta.test", Holder: "a", ExpiresAt: t0.Add(15 * time.Second)}, l)

	require.True(t, take("b", t0.Add(15*time.Second)), "taken over once it ran out")
	require.False(t, take("a", t0.Add(16*time.Second)), "the old holder lost it")
	require.NoError(t, s.ReleaseLease(ctx, "poll:beta.test", "a"), "releasing a lease one does not hold changes nothing")
	require.False(t, take("a", t0.Add(16*time.Second)))
	require.NoError(t, s.ReleaseLease(ctx, "poll:beta.test", "b"))
	require.True(t, take("a", t0.Add(16*time.Second)), "a released lease is free at once")

	held, err := s.AcquireLease(ctx, "poll:gamma.test", "b", t0.Add(16*time.Second), ttl)
	require.NoError(t, err)
	require.True(t, held, "leases are independent")
}

// Replicas racing for a free lease: exactly one wins it.
func (x suite) testLeaseRaceHasOneWinner(t *testing.T) {
	first, db := x.openStore(t)
	second, err := db.Open(t)
	require.NoError(t, err)
	t.Cleanup(func() { _ = second.Close() })
	ctx := t.Context()
	now := time.Now()
	for round := range 20 {
		name := fmt.Sprintf("poll:p%d.test", round)
		wins := make([]bool, 4)
		var wg sync.WaitGroup
		for i := range wins {
			s := []datastore.Store{first, second}[i%2]
			wg.Go(func() {
				held, err := s.AcquireLease(ctx, name, fmt.Sprintf("replica-%d", i), now, time.Minute)
				assert.NoError(t, err)
				wins[i] = held
			})
		}
		wg.Wait()
		n := 0
		for _, w := range wins {
			if w {
				n++
			}
		}
		require.Equal(t, 1, n, "round %d: %v", round, wins)
	}
}

func (x suite) testSealedKeys(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	_, err := s.SealedKey(ctx, "x509-aa")
	require.ErrorIs(t, err, datastore.ErrNotFound)
	require.NoError(t, s.PutSealedKey(ctx, "x509-aa", []byte{1, 2, 3}))
	require.NoError(t, s.PutSealedKey(ctx, "jwt-bb", []byte{4}))
	require.ErrorIs(t, s.PutSealedKey(ctx, "x509-aa", []byte{9}), datastore.ErrAlreadyExists)

	s = reopen(t, s, path)
	got, err := s.SealedKey(ctx, "x509-aa")
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3}, got, "the first write stays")
	require.Equal(t, []string{"jwt-bb", "x509-aa"}, sealedKeyNames(t, s))
	require.NoError(t, s.DeleteSealedKey(ctx, "x509-aa"))
	require.NoError(t, s.DeleteSealedKey(ctx, "x509-aa"), "deleting twice is fine")
	require.Equal(t, []string{"jwt-bb"}, sealedKeyNames(t, s))
}

func sealedKeyNames(t *testing.T, s datastore.Store) []string {
	t.Helper()
	keys, err := s.ListSealedKeys(t.Context())
	require.NoError(t, err)
	var names []string
	for _, k := range keys {
		require.WithinDuration(t, time.Now(), k.CreatedAt, time.Minute)
		require.Nil(t, k.Sealed, "a listing carries no key")
		names = append(names, k.Name)
	}
	return names
}
