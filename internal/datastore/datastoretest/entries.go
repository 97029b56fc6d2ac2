package datastoretest

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

func (x suite) testEntries(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	e := datastore.Entry{
		SPIFFEID:      spiffeid.RequireFromString("spiffe://alpha.test/svc/api"),
		ParentID:      spiffeid.RequireFromString("spiffe://alpha.test/spire/server"),
		Selectors:     []datastore.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:10"}, {Type: "unix", Value: "uid:1000"}},
		FederatesWith: []string{"gamma.test", "beta.test"},
		X509SVIDTTL:   time.Hour, JWTSVIDTTL: 5 * time.Minute,
		DNSNames: []string{"api.alpha.test"}, Hint: "api", Admin: true,
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	created, err := s.CreateEntry(ctx, e)
	require.NoError(t, err)
	require.Len(t, created.ID, 36, "a UUID is assigned")
	require.Equal(t, []datastore.Selector{{Type: "unix", Value: "gid:10"}, {Type: "unix", Value: "uid:1000"}}, created.Selectors, "sorted, duplicates removed")
	require.Equal(t, []string{"beta.test", "gamma.test"}, created.FederatesWith)

	t.Run("fail/duplicate", func(t *testing.T) {
		dup := e
		dup.Selectors = []datastore.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:10"}}
		_, err := s.CreateEntry(ctx, dup)
		require.ErrorIs(t, err, datastore.ErrAlreadyExists)
		require.ErrorContains(t, err, created.ID)
	})
	t.Run("fail/id taken", func(t *testing.T) {
		other := e
		other.ID, other.SPIFFEID = created.ID, spiffeid.RequireFromString("spiffe://alpha.test/svc/other")
		_, err := s.CreateEntry(ctx, other)
		require.ErrorIs(t, err, datastore.ErrAlreadyExists)
	})
	t.Run("ok/update raises revision", func(t *testing.T) {
		upd := created
		upd.Hint = "renamed"
		got, err := s.UpdateEntry(ctx, upd)
		require.NoError(t, err)
		require.Equal(t, int64(1), got.RevisionNumber)
		require.Equal(t, created.CreatedAt, got.CreatedAt)
	})
	t.Run("fail/update missing", func(t *testing.T) {
		_, err := s.UpdateEntry(ctx, datastore.Entry{ID: "nope", SPIFFEID: e.SPIFFEID})
		require.ErrorIs(t, err, datastore.ErrNotFound)
	})

	// Everything survives a reopen.
	require.NoError(t, s.Close())
	s, err = path.Open(t)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Entry(ctx, created.ID)
	require.NoError(t, err)
	want := created
	want.Hint, want.RevisionNumber = "renamed", 1
	require.Equal(t, want, got)
	n, err := s.CountEntries(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	require.NoError(t, s.DeleteEntry(ctx, created.ID))
	require.ErrorIs(t, s.DeleteEntry(ctx, created.ID), datastore.ErrNotFound)
	_, err = s.Entry(ctx, created.ID)
	require.ErrorIs(t, err, datastore.ErrNotFound)
	list, err := s.ListEntries(ctx)
	require.NoError(t, err)
	require.Empty(t, list)
}
