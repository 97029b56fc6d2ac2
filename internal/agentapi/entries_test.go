package agentapi

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/datastore"
)

// agentMask is the output mask spire-agent v1.15.3 sends.
var agentMask = &types.EntryMask{
	SpiffeId: true, Selectors: true, FederatesWith: true, Admin: true, Downstream: true,
	RevisionNumber: true, StoreSvid: true, Hint: true, AdditionalAttributes: true, CreatedAt: true,
}

// fixedCaller returns node for every call: the test seam standing for the
// server's agent authentication.
func fixedCaller(node datastore.AttestedNode) func(context.Context) (datastore.AttestedNode, error) {
	return func(context.Context) (datastore.AttestedNode, error) { return node, nil }
}

var entryNode = datastore.AttestedNode{SPIFFEID: entryAgent, SerialNumber: "1", Selectors: []datastore.Selector{testSel("x509pop", "subject:cn:node1")}}

// serveServices serves the given registrations on a loopback TCP listener
// without TLS (the transport is the server's) and returns a client
// connection with gRPC's default limits.
func serveServices(t *testing.T, register func(g *grpc.Server)) *grpc.ClientConn {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	register(g)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func entryClient(t *testing.T, x *Index) entryv1.EntryClient {
	t.Helper()
	s := &entryService{index: x, caller: fixedCaller(entryNode)}
	return entryv1.NewEntryClient(serveServices(t, func(g *grpc.Server) { entryv1.RegisterEntryServer(g, s) }))
}

// manyEntries returns n entries parented to the test agent, each padded
// with a hint of pad bytes.
func manyEntries(n, pad int) []datastore.Entry {
	entries := make([]datastore.Entry, n)
	for i := range entries {
		entries[i] = testEntry(fmt.Sprintf("e%05d", i), testAgentStr, fmt.Sprintf("spiffe://alpha.test/w/%d", i))
		entries[i].Hint = strings.Repeat("h", pad)
	}
	return entries
}

// syncResult is what one sync exchanged, seen from the agent.
type syncResult struct {
	entries       map[string]*types.Entry
	revisionPages []int // entries per revision page
	entryPages    []int // entries per page answering ID requests
}

// agentSync syncs as spire-agent v1.15.3 does (client.go
// streamAndSyncEntries): it asks for every entry not in cached or whose
// revision or creation time differs, in chunks of the first revision page's
// size, and cancels the stream when done. cached is updated in place.
func agentSync(t *testing.T, c entryv1.EntryClient, cached map[string]*types.Entry) syncResult {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := c.SyncAuthorizedEntries(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: agentMask}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	res := syncResult{entries: map[string]*types.Entry{}}
	if len(resp.GetEntryRevisions()) == 0 {
		clear(cached)
		for _, e := range resp.GetEntries() {
			cached[e.GetId()], res.entries[e.GetId()] = e, e
		}
		return res
	}
	seen := map[string]bool{}
	var needFull []string
	pageSize := len(resp.GetEntryRevisions())
	for {
		require.Empty(t, resp.GetEntries(), "entries in a revision page")
		res.revisionPages = append(res.revisionPages, len(resp.GetEntryRevisions()))
		for _, r := range resp.GetEntryRevisions() {
			seen[r.GetId()] = true
			if e, ok := cached[r.GetId()]; !ok || e.GetRevisionNumber() != r.GetRevisionNumber() || e.GetCreatedAt() != r.GetCreatedAt() {
				needFull = append(needFull, r.GetId())
			}
		}
		if !resp.GetMore() {
			break
		}
		resp, err = stream.Recv()
		require.NoError(t, err)
	}
	slices.Sort(needFull)
	for len(needFull) > 0 {
		n := min(len(needFull), pageSize)
		require.NoError(t, stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: needFull[:n]}))
		needFull = needFull[n:]
		for {
			resp, err := stream.Recv()
			require.NoError(t, err)
			require.Empty(t, resp.GetEntryRevisions(), "revisions in an entry page")
			res.entryPages = append(res.entryPages, len(resp.GetEntries()))
			for _, e := range resp.GetEntries() {
				cached[e.GetId()], res.entries[e.GetId()] = e, e
			}
			if !resp.GetMore() {
				break
			}
		}
	}
	for id := range cached {
		if !seen[id] {
			delete(cached, id)
		}
	}
	return res
}

func TestSyncAuthorizedEntries(t *testing.T) {
	tests := []struct {
		name          string
		entries       []datastore.Entry
		revisionPages []int
		entryPages    []int
	}{
		{"ok/small set in one message", manyEntries(3, 0), nil, nil},
		{"ok/500 entries in one message", manyEntries(500, 0), nil, nil},
		{"ok/1,200 entries: revision pages, then entry pages", manyEntries(1200, 0), []int{500, 500, 200}, []int{500, 500, 200}},
		// 300 entries of ~20 KiB weigh 6 MiB: too much for one message
		// though under a page, so they go the paged way and each answer
		// is split by size.
		{"ok/big entries split by size", manyEntries(300, 20<<10), []int{300}, []int{204, 96}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := entryClient(t, newTestIndex(tt.entries...))
			cached := map[string]*types.Entry{}
			res := agentSync(t, c, cached)
			require.Equal(t, tt.revisionPages, res.revisionPages)
			require.Equal(t, tt.entryPages, res.entryPages)
			require.Len(t, cached, len(tt.entries))
			got := cached[tt.entries[0].ID]
			require.Equal(t, "spiffe://alpha.test/w/0", "spiffe://"+got.GetSpiffeId().GetTrustDomain()+got.GetSpiffeId().GetPath())
			require.NotEmpty(t, got.GetSelectors())
			require.Equal(t, int64(1), got.GetRevisionNumber())
			require.Equal(t, entryNow.Add(-time.Hour).Unix(), got.GetCreatedAt())
			require.Nil(t, got.GetParentId(), "not in the agent's mask")
		})
	}
}

func TestSyncAuthorizedEntriesStale(t *testing.T) {
	entries := manyEntries(1200, 0)
	x := newTestIndex(entries...)
	c := entryClient(t, x)
	cached := map[string]*types.Entry{}
	require.Len(t, agentSync(t, c, cached).entries, 1200)

	require.Empty(t, agentSync(t, c, cached).entries, "nothing changed, nothing downloaded")

	entries[7].RevisionNumber++                                  // updated
	entries[8].CreatedAt = entries[8].CreatedAt.Add(time.Minute) // deleted and recreated with the same ID
	entries = append(entries[:9], entries[10:]...)               // deleted
	x.Rebuild(entries)
	res := agentSync(t, c, cached)
	require.Len(t, res.entries, 2)
	require.Equal(t, int64(2), res.entries[entries[7].ID].GetRevisionNumber())
	require.Contains(t, res.entries, entries[8].ID)
	require.Len(t, cached, 1199)
	require.NotContains(t, cached, "e00009")
}

func TestSyncAuthorizedEntriesRequests(t *testing.T) {
	tests := []struct {
		name string
		req  *entryv1.SyncAuthorizedEntriesRequest
		code codes.Code
	}{
		{"ok/agent's mask", &entryv1.SyncAuthorizedEntriesRequest{OutputMask: agentMask}, codes.OK},
		{"ok/no mask means every field", &entryv1.SyncAuthorizedEntriesRequest{}, codes.OK},
		{"fail/ids on the first request", &entryv1.SyncAuthorizedEntriesRequest{OutputMask: agentMask, Ids: []string{"e00001"}}, codes.InvalidArgument},
		{"fail/revision number masked", &entryv1.SyncAuthorizedEntriesRequest{OutputMask: &types.EntryMask{SpiffeId: true}}, codes.InvalidArgument},
	}
	c := entryClient(t, newTestIndex(manyEntries(2, 0)...))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := c.SyncAuthorizedEntries(t.Context())
			require.NoError(t, err)
			require.NoError(t, stream.Send(tt.req))
			resp, err := stream.Recv()
			require.Equal(t, tt.code, status.Code(err), "%v", err)
			if tt.code == codes.OK {
				require.Len(t, resp.GetEntries(), 2)
			}
		})
	}
}

func TestSyncAuthorizedEntriesUnknownIDsOmitted(t *testing.T) {
	c := entryClient(t, newTestIndex(manyEntries(600, 0)...))
	stream, err := c.SyncAuthorizedEntries(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: agentMask}))
	for more := true; more; {
		resp, err := stream.Recv()
		require.NoError(t, err)
		more = resp.GetMore()
	}
	require.NoError(t, stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: []string{"nope", "e00002", "e00001", "e00002"}}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.False(t, resp.GetMore())
	require.Len(t, resp.GetEntries(), 2)
	require.Equal(t, "e00001", resp.GetEntries()[0].GetId())
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	require.ErrorContains(t, err, "EOF", "the server ends the stream normally")
}

func TestSyncAuthorizedEntriesCallerRefused(t *testing.T) {
	denied := status.Error(codes.PermissionDenied, "agent is banned")
	s := &entryService{index: newTestIndex(), caller: func(context.Context) (datastore.AttestedNode, error) { return datastore.AttestedNode{}, denied }}
	c := entryv1.NewEntryClient(serveServices(t, func(g *grpc.Server) { entryv1.RegisterEntryServer(g, s) }))
	stream, err := c.SyncAuthorizedEntries(t.Context())
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = c.GetAuthorizedEntries(t.Context(), &entryv1.GetAuthorizedEntriesRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
}

func TestGetAuthorizedEntries(t *testing.T) {
	entries := manyEntries(1200, 0)
	entries = append(entries, testEntry("other", "spiffe://alpha.test/spire/agent/other", "spiffe://alpha.test/x"))
	c := entryClient(t, newTestIndex(entries...))
	resp, err := c.GetAuthorizedEntries(t.Context(), &entryv1.GetAuthorizedEntriesRequest{OutputMask: &types.EntryMask{ParentId: true}})
	require.NoError(t, err)
	require.Len(t, resp.GetEntries(), 1200, "all in one message, only the agent's")
	require.Equal(t, testAgentStr, "spiffe://"+resp.GetEntries()[0].GetParentId().GetTrustDomain()+resp.GetEntries()[0].GetParentId().GetPath())
	require.Nil(t, resp.GetEntries()[0].GetSpiffeId(), "masked out")
}

func TestEntryToProtoFederatesWith(t *testing.T) {
	e := testEntry("a", testAgentStr, "spiffe://alpha.test/a")
	e.FederatesWith = []string{"beta.test", datastore.FederateWithAll}
	require.Equal(t, []string{"beta.test"}, entryToProto(e, agentMask).GetFederatesWith(), `"*" would make the agent drop the entry`)
}
