package datastoretest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

var (
	popAgent   = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/aa")
	tokenAgent = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/join_token/bb")
	notAfter   = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cnSelector = datastore.Selector{Type: "x509pop", Value: "subject:cn:node-1"}
	caSelector = datastore.Selector{Type: "x509pop", Value: "ca:fingerprint:ab"}
)

// popNode is an x509pop agent in the middle of a renewal: it holds SVID
// 1001 and has been issued 2002.
func popNode() datastore.AttestedNode {
	return datastore.AttestedNode{
		SPIFFEID: popAgent, AttestationType: "x509pop",
		SerialNumber: "1001", NotAfter: notAfter,
		NewSerialNumber: "2002", NewNotAfter: notAfter.Add(time.Hour),
		CanReattest: true, Selectors: []datastore.Selector{cnSelector, caSelector}, AgentVersion: "1.15.3",
	}
}

// reopen closes s and opens its database again, so that what a test reads
// next comes from storage, not from anything the store kept.
func reopen(t *testing.T, s datastore.Store, path DB) datastore.Store {
	t.Helper()
	require.NoError(t, s.Close())
	s2, err := path.Open(t)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	return s2
}

func countNodeSelectors(t *testing.T, s datastore.Store, id spiffeid.ID) int {
	t.Helper()
	var n int
	require.NoError(t, rawDB(t, s).QueryRowContext(t.Context(), `SELECT COUNT(*) FROM attested_node_selectors WHERE spiffe_id = ?`, id.String()).Scan(&n))
	return n
}

func (x suite) testAttestedNodeLifecycle(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	pop, err := s.CreateAttestedNode(ctx, popNode())
	require.NoError(t, err)
	require.False(t, pop.CreatedAt.IsZero())
	require.Equal(t, pop.CreatedAt, pop.UpdatedAt)
	tok, err := s.CreateAttestedNode(ctx, datastore.AttestedNode{SPIFFEID: tokenAgent, AttestationType: "join_token", SerialNumber: "7", NotAfter: notAfter})
	require.NoError(t, err)

	upd := pop
	upd.SerialNumber, upd.NotAfter, upd.NewSerialNumber, upd.NewNotAfter = "3003", notAfter.Add(2*time.Hour), "", time.Time{}
	upd.Selectors, upd.AgentVersion, upd.CanReattest = []datastore.Selector{cnSelector}, "1.15.4", false
	upd.CreatedAt = time.Unix(1, 0) // not mutable: the stored creation time stays
	pop, err = s.UpdateAttestedNode(ctx, upd)
	require.NoError(t, err)
	require.Equal(t, upd.SerialNumber, pop.SerialNumber)
	require.False(t, pop.UpdatedAt.Before(pop.CreatedAt))
	require.NotEqual(t, time.Unix(1, 0), pop.CreatedAt)

	s = reopen(t, s, path)
	got, err := s.AttestedNode(ctx, popAgent)
	require.NoError(t, err)
	require.Equal(t, pop, got)
	list, err := s.ListAttestedNodes(ctx)
	require.NoError(t, err)
	require.Equal(t, []datastore.AttestedNode{tok, pop}, list, "ordered by SPIFFE ID")

	require.NoError(t, s.DeleteAttestedNode(ctx, popAgent))
	require.Zero(t, countNodeSelectors(t, s, popAgent), "its selectors went with it")
	s = reopen(t, s, path)
	_, err = s.AttestedNode(ctx, popAgent)
	require.ErrorIs(t, err, datastore.ErrNotFound)
	list, err = s.ListAttestedNodes(ctx)
	require.NoError(t, err)
	require.Equal(t, []datastore.AttestedNode{tok}, list)
}

// A call about a node that does not exist wraps ErrNotFound, a second node
// with a taken SPIFFE ID wraps ErrAlreadyExists, and neither changes what
// is stored.
func (x suite) testAttestedNodeNotFoundAndAlreadyExists(t *testing.T) {
	missing := spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/missing")
	for _, tc := range []struct {
		name string
		call func(context.Context, datastore.Store) error
		want error
	}{
		{"fail/create existing", func(ctx context.Context, s datastore.Store) error {
			n := popNode()
			n.Selectors, n.SerialNumber = []datastore.Selector{{Type: "x509pop", Value: "other"}}, "9"
			_, err := s.CreateAttestedNode(ctx, n)
			return err
		}, datastore.ErrAlreadyExists},
		{"fail/get missing", func(ctx context.Context, s datastore.Store) error {
			_, err := s.AttestedNode(ctx, missing)
			return err
		}, datastore.ErrNotFound},
		{"fail/update missing", func(ctx context.Context, s datastore.Store) error {
			_, err := s.UpdateAttestedNode(ctx, datastore.AttestedNode{SPIFFEID: missing, Selectors: []datastore.Selector{cnSelector}})
			return err
		}, datastore.ErrNotFound},
		{"fail/delete missing", func(ctx context.Context, s datastore.Store) error {
			return s.DeleteAttestedNode(ctx, missing)
		}, datastore.ErrNotFound},
		{"fail/ban missing", func(ctx context.Context, s datastore.Store) error {
			return s.BanAttestedNode(ctx, missing)
		}, datastore.ErrNotFound},
		{"fail/promote missing", func(ctx context.Context, s datastore.Store) error {
			_, err := s.PromoteNewSerial(ctx, missing, "2002")
			return err
		}, datastore.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := x.openStore(t)
			ctx := t.Context()
			stored, err := s.CreateAttestedNode(ctx, popNode())
			require.NoError(t, err)
			require.ErrorIs(t, tc.call(ctx, s), tc.want)
			list, err := s.ListAttestedNodes(ctx)
			require.NoError(t, err)
			require.Equal(t, []datastore.AttestedNode{stored}, list)
			require.Zero(t, countNodeSelectors(t, s, missing))
		})
	}
}

// Selectors are a set: stored sorted without duplicates whatever the order
// given, on create and on update, and read back alike after a reopen.
func (x suite) testAttestedNodeSelectorsAreASet(t *testing.T) {
	k8s := datastore.Selector{Type: "k8s_psat", Value: "cluster:prod"}
	for _, tc := range []struct {
		name string
		in   []datastore.Selector
		want []datastore.Selector
	}{
		{"ok/none", nil, nil},
		{"ok/one", []datastore.Selector{cnSelector}, []datastore.Selector{cnSelector}},
		{"ok/sorted stays", []datastore.Selector{k8s, caSelector, cnSelector}, []datastore.Selector{k8s, caSelector, cnSelector}},
		{"ok/unsorted is sorted", []datastore.Selector{cnSelector, k8s, caSelector}, []datastore.Selector{k8s, caSelector, cnSelector}},
		{"ok/duplicates stored once", []datastore.Selector{cnSelector, caSelector, cnSelector, caSelector}, []datastore.Selector{caSelector, cnSelector}},
		{"ok/one value under two types", []datastore.Selector{{Type: "b", Value: "v"}, {Type: "a", Value: "v"}}, []datastore.Selector{{Type: "a", Value: "v"}, {Type: "b", Value: "v"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := x.openStore(t)
			ctx := t.Context()
			given := slices.Clone(tc.in)
			n := popNode()
			n.Selectors = tc.in
			created, err := s.CreateAttestedNode(ctx, n)
			require.NoError(t, err)
			require.Equal(t, tc.want, created.Selectors)
			require.Equal(t, given, tc.in, "the caller's slice is left alone")

			n.Selectors = slices.Clone(tc.in)
			slices.Reverse(n.Selectors)
			updated, err := s.UpdateAttestedNode(ctx, n)
			require.NoError(t, err)
			require.Equal(t, tc.want, updated.Selectors)

			s = reopen(t, s, path)
			got, err := s.AttestedNode(ctx, popAgent)
			require.NoError(t, err)
			require.Equal(t, tc.want, got.Selectors)
			require.Equal(t, len(tc.want), countNodeSelectors(t, s, popAgent))
		})
	}
}

// A ban clears both serial numbers and keeps the record, its selectors and
// its expiry; banning again is no error, and a banned node's old new serial
// is never promoted.
func (x suite) testBanAttestedNode(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	stored, err := s.CreateAttestedNode(ctx, popNode())
	require.NoError(t, err)
	require.False(t, stored.Banned())
	require.NoError(t, s.BanAttestedNode(ctx, popAgent))
	require.NoError(t, s.BanAttestedNode(ctx, popAgent), "banning a banned node")
	promoted, err := s.PromoteNewSerial(ctx, popAgent, "2002")
	require.NoError(t, err)
	require.False(t, promoted)

	s = reopen(t, s, path)
	got, err := s.AttestedNode(ctx, popAgent)
	require.NoError(t, err)
	require.True(t, got.Banned())
	want := stored
	want.SerialNumber, want.NewSerialNumber, want.NewNotAfter, want.UpdatedAt = "", "", time.Time{}, got.UpdatedAt
	require.Equal(t, want, got)
}

func (x suite) testPromoteNewSerial(t *testing.T) {
	renewed := popNode()
	renewed.SerialNumber, renewed.NotAfter = renewed.NewSerialNumber, renewed.NewNotAfter
	renewed.NewSerialNumber, renewed.NewNotAfter = "", time.Time{}
	for _, tc := range []struct {
		name     string
		serial   string
		promoted bool
		want     datastore.AttestedNode
	}{
		{"ok/new serial becomes current", "2002", true, renewed},
		{"ok/current serial promotes nothing", "1001", false, popNode()},
		{"ok/unknown serial promotes nothing", "3003", false, popNode()},
		{"ok/empty serial promotes nothing", "", false, popNode()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := x.openStore(t)
			ctx := t.Context()
			_, err := s.CreateAttestedNode(ctx, popNode())
			require.NoError(t, err)
			promoted, err := s.PromoteNewSerial(ctx, popAgent, tc.serial)
			require.NoError(t, err)
			require.Equal(t, tc.promoted, promoted)
			again, err := s.PromoteNewSerial(ctx, popAgent, tc.serial)
			require.NoError(t, err)
			require.False(t, again, "a promotion happens once")

			s = reopen(t, s, path)
			got, err := s.AttestedNode(ctx, popAgent)
			require.NoError(t, err)
			got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}
			tc.want.Selectors = []datastore.Selector{caSelector, cnSelector}
			require.Equal(t, tc.want, got)
		})
	}
}
