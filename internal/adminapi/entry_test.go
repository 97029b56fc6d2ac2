package adminapi

import (
	"testing"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func startEntries(t *testing.T) entryv1.EntryClient {
	t.Helper()
	conn, _ := startWith(t, func(cfg *Config) { cfg.Entries = cfg.Store.(EntryStore) })
	return entryv1.NewEntryClient(conn)
}

func workloadEntry(path string, uid string, federatesWith ...string) *types.Entry {
	return &types.Entry{
		SpiffeId:      &types.SPIFFEID{TrustDomain: "alpha.test", Path: path},
		ParentId:      &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/treaty"},
		Selectors:     []*types.Selector{{Type: "unix", Value: "uid:" + uid}},
		FederatesWith: federatesWith,
	}
}

// create creates entries and requires each to succeed.
func create(t *testing.T, client entryv1.EntryClient, entries ...*types.Entry) []*types.Entry {
	t.Helper()
	resp, err := client.BatchCreateEntry(t.Context(), &entryv1.BatchCreateEntryRequest{Entries: entries})
	require.NoError(t, err)
	var out []*types.Entry
	for i, r := range resp.GetResults() {
		require.Equal(t, int32(codes.OK), r.GetStatus().GetCode(), "entry %d: %s", i, r.GetStatus().GetMessage())
		out = append(out, r.GetEntry())
	}
	return out
}

func TestGetEntry(t *testing.T) {
	client := startEntries(t)
	made := create(t, client, workloadEntry("/web", "1000"))[0]
	require.NotEmpty(t, made.GetId())

	got, err := client.GetEntry(t.Context(), &entryv1.GetEntryRequest{Id: made.GetId()})
	require.NoError(t, err)
	require.Equal(t, "/web", got.GetSpiffeId().GetPath())
	require.Equal(t, "uid:1000", got.GetSelectors()[0].GetValue())

	masked, err := client.GetEntry(t.Context(), &entryv1.GetEntryRequest{Id: made.GetId(), OutputMask: &types.EntryMask{SpiffeId: true}})
	require.NoError(t, err)
	require.Equal(t, "/web", masked.GetSpiffeId().GetPath())
	require.Empty(t, masked.GetSelectors(), "the mask leaves selectors out")

	for _, tc := range []struct {
		name string
		id   string
		code codes.Code
	}{
		{name: "fail/unknown ID", id: "no-such-entry", code: codes.NotFound},
		{name: "fail/missing ID", code: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.GetEntry(t.Context(), &entryv1.GetEntryRequest{Id: tc.id})
			require.Equal(t, tc.code, status.Code(err), "%v", err)
		})
	}
}

func TestEntryLifecycle(t *testing.T) {
	client := startEntries(t)
	ctx := t.Context()
	made := create(t, client, workloadEntry("/web", "1000"), workloadEntry("/db", "1001", "beta.test"))

	count, err := client.CountEntries(ctx, &entryv1.CountEntriesRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(2), count.GetCount())

	t.Run("fail/duplicate answers with the entry that exists", func(t *testing.T) {
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{workloadEntry("/web", "1000")}})
		require.NoError(t, err)
		r := resp.GetResults()[0]
		require.Equal(t, int32(codes.AlreadyExists), r.GetStatus().GetCode())
		require.Equal(t, made[0].GetId(), r.GetEntry().GetId())
	})
	t.Run("fail/invalid entry", func(t *testing.T) {
		bad := workloadEntry("/x", "1")
		bad.Selectors = nil
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{bad}})
		require.NoError(t, err)
		require.Equal(t, int32(codes.InvalidArgument), resp.GetResults()[0].GetStatus().GetCode())
	})
	t.Run("ok/list filtered by federates-with", func(t *testing.T) {
		resp, err := client.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: &entryv1.ListEntriesRequest_Filter{
			ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"beta.test"}, Match: types.FederatesWithMatch_MATCH_ANY}}})
		require.NoError(t, err)
		require.Len(t, resp.GetEntries(), 1)
		require.Equal(t, made[1].GetId(), resp.GetEntries()[0].GetId())
	})
	t.Run("ok/update through a mask", func(t *testing.T) {
		resp, err := client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
			Entries:   []*types.Entry{{Id: made[0].GetId(), X509SvidTtl: 600}},
			InputMask: &types.EntryMask{X509SvidTtl: true},
		})
		require.NoError(t, err)
		r := resp.GetResults()[0]
		require.Equal(t, int32(codes.OK), r.GetStatus().GetCode(), r.GetStatus().GetMessage())
		got, err := client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: made[0].GetId()})
		require.NoError(t, err)
		require.Equal(t, int32(600), got.GetX509SvidTtl())
		require.Equal(t, "/web", got.GetSpiffeId().GetPath(), "fields outside the mask are kept")
	})
	t.Run("fail/update of an unknown entry", func(t *testing.T) {
		resp, err := client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{{Id: "no-such-entry"}, {}}})
		require.NoError(t, err)
		require.Equal(t, int32(codes.NotFound), resp.GetResults()[0].GetStatus().GetCode())
		require.Equal(t, int32(codes.InvalidArgument), resp.GetResults()[1].GetStatus().GetCode())
	})
	t.Run("ok/delete", func(t *testing.T) {
		resp, err := client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{made[0].GetId(), made[0].GetId(), ""}})
		require.NoError(t, err)
		var codesSeen []int32
		for _, r := range resp.GetResults() {
			codesSeen = append(codesSeen, r.GetStatus().GetCode())
		}
		require.Equal(t, []int32{int32(codes.OK), int32(codes.NotFound), int32(codes.InvalidArgument)}, codesSeen)
		_, err = client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: made[0].GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})
	t.Run("fail/agent calls are not served", func(t *testing.T) {
		_, err := client.GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
		require.Equal(t, codes.Unimplemented, status.Code(err))
	})
}
