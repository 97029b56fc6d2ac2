package adminapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/entrywire"
)

// startAgents runs the admin API with the Agent and Entry services over a
// real store, and stores nodes as attestation would have.
func startAgents(t *testing.T, nodes ...datastore.AttestedNode) (agentv1.AgentClient, *grpc.ClientConn, *sqlite.Store) {
	t.Helper()
	conn, store := startWith(t, func(c *Config) { c.Entries, c.Agents = c.Store.(*sqlite.Store), c.Store.(*sqlite.Store) })
	for _, n := range nodes {
		_, err := store.CreateAttestedNode(t.Context(), n)
		require.NoError(t, err)
	}
	return agentv1.NewAgentClient(conn), conn, store
}

var (
	agentA = spiffeid.RequireFromPath(td, "/spire/agent/x509pop/a")
	agentB = spiffeid.RequireFromPath(td, "/spire/agent/x509pop/b")
	agentC = spiffeid.RequireFromPath(td, "/spire/agent/join_token/c")
	// expiry of agentA; B and C expire later.
	expiryA = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

func testNodes() []datastore.AttestedNode {
	sel := func(vs ...string) []datastore.Selector {
		var out []datastore.Selector
		for _, v := range vs {
			out = append(out, datastore.Selector{Type: "x509pop", Value: v})
		}
		return out
	}
	return []datastore.AttestedNode{
		{SPIFFEID: agentA, AttestationType: "x509pop", SerialNumber: "11", NotAfter: expiryA, CanReattest: true,
			Selectors: sel("ca:1", "cn:a"), AgentVersion: "1.15.3"},
		{SPIFFEID: agentB, AttestationType: "x509pop", SerialNumber: "12", NotAfter: expiryA.Add(time.Hour), CanReattest: true,
			Selectors: sel("ca:1", "cn:b")},
		{SPIFFEID: agentC, AttestationType: "join_token", SerialNumber: "", NotAfter: expiryA.Add(2 * time.Hour)},
	}
}

func ids(agents []*types.Agent) []string {
	out := []string{}
	for _, a := range agents {
		out = append(out, protoIDString(a.GetId()))
	}
	return out
}

func TestListAgentsFilters(t *testing.T) {
	client, _, _ := startAgents(t, testNodes()...)
	match := func(m types.SelectorMatch_MatchBehavior, vs ...string) *types.SelectorMatch {
		out := &types.SelectorMatch{Match: m}
		for _, v := range vs {
			out.Selectors = append(out.Selectors, &types.Selector{Type: "x509pop", Value: v})
		}
		return out
	}
	a, b, c := agentA.String(), agentB.String(), agentC.String()
	tests := []struct {
		name   string
		filter *agentv1.ListAgentsRequest_Filter
		want   []string
		code   codes.Code
	}{
		{"ok/no filter", nil, []string{c, a, b}, codes.OK},
		{"ok/attestation type", &agentv1.ListAgentsRequest_Filter{ByAttestationType: "join_token"}, []string{c}, codes.OK},
		{"ok/banned", &agentv1.ListAgentsRequest_Filter{ByBanned: wrapperspb.Bool(true)}, []string{c}, codes.OK},
		{"ok/not banned", &agentv1.ListAgentsRequest_Filter{ByBanned: wrapperspb.Bool(false)}, []string{a, b}, codes.OK},
		{"ok/can reattest", &agentv1.ListAgentsRequest_Filter{ByCanReattest: wrapperspb.Bool(true)}, []string{a, b}, codes.OK},
		{"ok/cannot reattest", &agentv1.ListAgentsRequest_Filter{ByCanReattest: wrapperspb.Bool(false)}, []string{c}, codes.OK},
		{"ok/expires before", &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: expiryA.Add(time.Minute).Format(expiresBeforeLayout)}, []string{a}, codes.OK},
		{"ok/expires before is strict", &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: expiryA.Format(expiresBeforeLayout)}, []string{}, codes.OK},
		{"ok/unparsable expires before is ignored", &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: "tomorrow"}, []string{c, a, b}, codes.OK},
		{"ok/superset", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_SUPERSET, "ca:1")}, []string{a, b}, codes.OK},
		{"ok/superset needs all", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_SUPERSET, "ca:1", "cn:a")}, []string{a}, codes.OK},
		{"ok/exact", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_EXACT, "cn:b", "ca:1")}, []string{b}, codes.OK},
		{"ok/exact not a superset", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_EXACT, "ca:1")}, []string{}, codes.OK},
		{"ok/subset", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_SUBSET, "ca:1", "cn:a", "cn:z")}, []string{a}, codes.OK},
		{"ok/subset skips nodes without selectors", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_SUBSET, "cn:z")}, []string{}, codes.OK},
		{"ok/any", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_ANY, "cn:b", "cn:z")}, []string{b}, codes.OK},
		{"ok/combined", &agentv1.ListAgentsRequest_Filter{ByAttestationType: "x509pop", BySelectorMatch: match(types.SelectorMatch_MATCH_ANY, "cn:b", "cn:a"), ByExpiresBefore: expiryA.Add(time.Minute).Format(expiresBeforeLayout)}, []string{a}, codes.OK},
		{"fail/empty selector set", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: match(types.SelectorMatch_MATCH_ANY)}, nil, codes.InvalidArgument},
		{"fail/selector without value", &agentv1.ListAgentsRequest_Filter{BySelectorMatch: &types.SelectorMatch{Selectors: []*types.Selector{{Type: "x509pop"}}}}, nil, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.ListAgents(t.Context(), &agentv1.ListAgentsRequest{Filter: tt.filter})
			require.Equal(t, tt.code, status.Code(err), "%v", err)
			if tt.code != codes.OK {
				return
			}
			require.Equal(t, tt.want, ids(resp.GetAgents()))
			count, err := client.CountAgents(t.Context(), &agentv1.CountAgentsRequest{Filter: countFilter(tt.filter)})
			require.NoError(t, err)
			require.Equal(t, int32(len(tt.want)), count.GetCount())
		})
	}
}

func countFilter(f *agentv1.ListAgentsRequest_Filter) *agentv1.CountAgentsRequest_Filter {
	if f == nil {
		return nil
	}
	return &agentv1.CountAgentsRequest_Filter{
		ByAttestationType: f.GetByAttestationType(), BySelectorMatch: f.GetBySelectorMatch(), ByExpiresBefore: f.GetByExpiresBefore(),
		ByBanned: f.GetByBanned(), ByCanReattest: f.GetByCanReattest(),
	}
}

func TestListAgentsPagingAndMask(t *testing.T) {
	client, _, store := startAgents(t, testNodes()...)
	ctx := t.Context()

	var got []string
	var token string
	pages := 0
	for {
		resp, err := client.ListAgents(ctx, &agentv1.ListAgentsRequest{PageSize: 2, PageToken: token})
		require.NoError(t, err)
		require.LessOrEqual(t, len(resp.GetAgents()), 2)
		got = append(got, ids(resp.GetAgents())...)
		pages++
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		// Deleting an agent already listed skips no other.
		require.NoError(t, store.DeleteAttestedNode(ctx, agentA))
	}
	require.Equal(t, []string{agentC.String(), agentA.String(), agentB.String()}, got, "ordered by SPIFFE ID")
	require.Equal(t, 2, pages)

	resp, err := client.ListAgents(ctx, &agentv1.ListAgentsRequest{OutputMask: &types.AgentMask{X509SvidExpiresAt: true}})
	require.NoError(t, err)
	require.Len(t, resp.GetAgents(), 2)
	masked := resp.GetAgents()[1]
	require.Equal(t, agentB.String(), protoIDString(masked.GetId()))
	require.Equal(t, expiryA.Add(time.Hour).Unix(), masked.GetX509SvidExpiresAt())
	require.Empty(t, masked.GetAttestationType())
	require.Empty(t, masked.GetSelectors())
	require.Empty(t, masked.GetX509SvidSerialNumber())
	require.False(t, masked.GetCanReattest())
}

func TestAgentLifecycle(t *testing.T) {
	client, _, _ := startAgents(t, testNodes()...)
	ctx := t.Context()
	pid := entrywire.IDToProto

	got, err := client.GetAgent(ctx, &agentv1.GetAgentRequest{Id: pid(agentA)})
	require.NoError(t, err)
	require.Equal(t, "x509pop", got.GetAttestationType())
	require.Equal(t, "11", got.GetX509SvidSerialNumber())
	require.Equal(t, expiryA.Unix(), got.GetX509SvidExpiresAt())
	require.Equal(t, "1.15.3", got.GetAgentVersion())
	require.True(t, got.GetCanReattest())
	require.False(t, got.GetBanned())
	require.Len(t, got.GetSelectors(), 2)

	bad := []struct {
		name string
		id   *types.SPIFFEID
		code codes.Code
		msg  string
	}{
		{"fail/other trust domain", &types.SPIFFEID{TrustDomain: "beta.test", Path: "/spire/agent/x509pop/a"}, codes.InvalidArgument, "invalid agent ID"},
		{"fail/not an agent", &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/workload"}, codes.InvalidArgument, "invalid agent ID"},
		{"fail/no ID", nil, codes.InvalidArgument, "invalid agent ID"},
		{"fail/unknown agent", &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/spire/agent/x509pop/zzz"}, codes.NotFound, "agent not found"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			calls := map[string]func() error{
				"get": func() error { _, err := client.GetAgent(ctx, &agentv1.GetAgentRequest{Id: tt.id}); return err },
				"ban": func() error { _, err := client.BanAgent(ctx, &agentv1.BanAgentRequest{Id: tt.id}); return err },
				"delete": func() error {
					_, err := client.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: tt.id})
					return err
				},
			}
			for name, call := range calls {
				err := call()
				require.Equal(t, tt.code, status.Code(err), "%s: %v", name, err)
				require.Contains(t, status.Convert(err).Message(), tt.msg, name)
			}
		})
	}

	_, err = client.BanAgent(ctx, &agentv1.BanAgentRequest{Id: pid(agentA)})
	require.NoError(t, err)
	got, err = client.GetAgent(ctx, &agentv1.GetAgentRequest{Id: pid(agentA)})
	require.NoError(t, err)
	require.True(t, got.GetBanned())
	require.Empty(t, got.GetX509SvidSerialNumber())

	_, err = client.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: pid(agentA)})
	require.NoError(t, err)
	_, err = client.GetAgent(ctx, &agentv1.GetAgentRequest{Id: pid(agentA)})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = client.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: pid(agentA)})
	require.Equal(t, codes.NotFound, status.Code(err))
}

func TestCreateJoinToken(t *testing.T) {
	client, conn, store := startAgents(t)
	ctx := t.Context()
	entries := entryv1.NewEntryClient(conn)

	plain, err := client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600})
	require.NoError(t, err)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, plain.GetValue())
	require.InDelta(t, time.Now().Add(600*time.Second).Unix(), plain.GetExpiresAt(), 5)
	list, err := entries.ListEntries(ctx, &entryv1.ListEntriesRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetEntries(), "a token without an agent ID makes no entry")
	consumed, err := store.ConsumeJoinToken(ctx, plain.GetValue())
	require.NoError(t, err)
	require.Equal(t, plain.GetExpiresAt(), consumed.ExpiresAt.Unix())

	bad := []struct {
		name string
		req  *agentv1.CreateJoinTokenRequest
		msg  string
	}{
		{"fail/no ttl", &agentv1.CreateJoinTokenRequest{}, "ttl is required"},
		{"fail/negative ttl", &agentv1.CreateJoinTokenRequest{Ttl: -1}, "ttl is required"},
		{"fail/agent ID of another trust domain", &agentv1.CreateJoinTokenRequest{Ttl: 60, AgentId: &types.SPIFFEID{TrustDomain: "beta.test", Path: "/node"}}, "invalid agent ID"},
		{"fail/agent ID in the reserved namespace", &agentv1.CreateJoinTokenRequest{Ttl: 60, AgentId: &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/spire/agent/x"}}, "reserved namespace"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.CreateJoinToken(ctx, tt.req)
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			require.Contains(t, status.Convert(err).Message(), tt.msg)
		})
	}

	tok, err := client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60, Token: "chosen", AgentId: &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/node/1"}})
	require.NoError(t, err)
	require.Equal(t, "chosen", tok.GetValue())
	_, err = client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60, Token: "chosen"})
	require.Equal(t, codes.AlreadyExists, status.Code(err))

	parent := "spiffe://alpha.test/spire/agent/join_token/chosen"
	list, err = entries.ListEntries(ctx, &entryv1.ListEntriesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetEntries(), 1)
	alias := list.GetEntries()[0]
	require.Equal(t, "spiffe://alpha.test/node/1", protoIDString(alias.GetSpiffeId()))
	require.Equal(t, parent, protoIDString(alias.GetParentId()))
	require.Len(t, alias.GetSelectors(), 1)
	require.Equal(t, "spiffe_id", alias.GetSelectors()[0].GetType())
	require.Equal(t, parent, alias.GetSelectors()[0].GetValue())

	// An operator's entry under the same agent survives eviction; the alias
	// does not.
	node := spiffeid.RequireFromString(parent)
	_, err = store.CreateEntry(ctx, datastore.Entry{SPIFFEID: spiffeid.RequireFromPath(td, "/workload"), ParentID: node,
		Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1000"}}})
	require.NoError(t, err)
	_, err = store.CreateAttestedNode(ctx, datastore.AttestedNode{SPIFFEID: node, AttestationType: "join_token", SerialNumber: "5", NotAfter: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	_, err = client.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: entrywire.IDToProto(node)})
	require.NoError(t, err)
	list, err = entries.ListEntries(ctx, &entryv1.ListEntriesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetEntries(), 1)
	require.Equal(t, "spiffe://alpha.test/workload", protoIDString(list.GetEntries()[0].GetSpiffeId()))
}

func TestAgentCallsNotOnAdminSocket(t *testing.T) {
	client, _, _ := startAgents(t)
	ctx := t.Context()
	_, err := client.RenewAgent(ctx, &agentv1.RenewAgentRequest{})
	requireNotHere(t, err)
	_, err = client.PostStatus(ctx, &agentv1.PostStatusRequest{})
	requireNotHere(t, err)
	stream, err := client.AttestAgent(ctx)
	require.NoError(t, err)
	_, err = stream.Recv()
	requireNotHere(t, err)
}

func requireNotHere(t *testing.T, err error) {
	t.Helper()
	require.Equal(t, codes.Unimplemented, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "agent_api.address")
}

// TestAgentAudit checks that ban, evict and join tokens are recorded, reads
// are not, and a join token never is, generated or chosen: it is a secret
// until used.
func TestAgentAudit(t *testing.T) {
	var audit bytes.Buffer
	conn, store := startWith(t, func(c *Config) {
		c.AuditLog = &audit
		c.Entries, c.Agents = c.Store.(*sqlite.Store), c.Store.(*sqlite.Store)
	})
	ctx := t.Context()
	_, err := store.CreateAttestedNode(ctx, testNodes()[0])
	require.NoError(t, err)
	client := agentv1.NewAgentClient(conn)

	_, err = client.ListAgents(ctx, &agentv1.ListAgentsRequest{})
	require.NoError(t, err)
	tok, err := client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60})
	require.NoError(t, err)
	chosen, err := client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60, Token: "chosen-by-the-caller-0042"})
	require.NoError(t, err)
	require.Equal(t, "chosen-by-the-caller-0042", chosen.GetValue())
	_, err = client.BanAgent(ctx, &agentv1.BanAgentRequest{Id: entrywire.IDToProto(agentA)})
	require.NoError(t, err)
	_, err = client.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: entrywire.IDToProto(agentA)})
	require.NoError(t, err)

	var ops []string
	for line := range strings.Lines(audit.String()) {
		var rec AuditRecord
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		require.Equal(t, "ok", rec.Result)
		ops = append(ops, rec.Operation[strings.LastIndex(rec.Operation, "/")+1:])
	}
	require.Equal(t, []string{"CreateJoinToken", "CreateJoinToken", "BanAgent", "DeleteAgent"}, ops)
	require.NotContains(t, audit.String(), tok.GetValue())
	require.NotContains(t, audit.String(), "chosen-by-the-caller-0042", "a token the caller chose is a secret too")
	require.Contains(t, audit.String(), agentA.Path())
}
