package agentapi

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

var (
	entryTD    = spiffeid.RequireTrustDomainFromString("alpha.test")
	entryAgent = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/abc")
	entryNow   = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
)

func testSel(typ, value string) datastore.Selector {
	return datastore.Selector{Type: typ, Value: value}
}

// testEntry is a test entry parented to parent, for the SPIFFE ID path.
func testEntry(id, parent, path string, selectors ...datastore.Selector) datastore.Entry {
	if len(selectors) == 0 {
		selectors = []datastore.Selector{testSel("unix", "uid:"+id)}
	}
	return datastore.Entry{
		ID: id, ParentID: spiffeid.RequireFromString(parent), SPIFFEID: spiffeid.RequireFromString(path),
		Selectors: selectors, RevisionNumber: 1, CreatedAt: entryNow.Add(-time.Hour),
	}
}

const (
	testAgentStr  = "spiffe://alpha.test/spire/agent/x509pop/abc"
	testServerStr = "spiffe://alpha.test/spire/server"
)

func newTestIndex(entries ...datastore.Entry) *Index {
	x := NewIndex(entryTD, nil)
	x.now = func() time.Time { return entryNow }
	x.Rebuild(entries)
	return x
}

func TestIndexAuthorized(t *testing.T) {
	agentSelectors := []datastore.Selector{testSel("x509pop", "subject:cn:node1"), testSel("x509pop", "ca:fingerprint:ff")}
	expired := testEntry("expired", testAgentStr, "spiffe://alpha.test/old")
	expired.ExpiresAt = entryNow.Add(-time.Second)
	unexpired := testEntry("later", testAgentStr, "spiffe://alpha.test/later")
	unexpired.ExpiresAt = entryNow.Add(time.Hour)
	expiredAlias := testEntry("alias", testServerStr, "spiffe://alpha.test/nodes/a", testSel("x509pop", "subject:cn:node1"))
	expiredAlias.ExpiresAt = entryNow
	noSelectorAlias := testEntry("alias", testServerStr, "spiffe://alpha.test/nodes/a")
	noSelectorAlias.Selectors = nil
	tests := []struct {
		name    string
		entries []datastore.Entry
		want    []string
	}{
		{"ok/direct parent", []datastore.Entry{
			testEntry("b", testAgentStr, "spiffe://alpha.test/web"),
			testEntry("a", testAgentStr, "spiffe://alpha.test/db"),
			testEntry("c", "spiffe://alpha.test/spire/agent/other", "spiffe://alpha.test/web"),
		}, []string{"a", "b"}},
		{"ok/node alias whose selectors are a subset", []datastore.Entry{
			testEntry("alias", testServerStr, "spiffe://alpha.test/nodes/a", testSel("x509pop", "subject:cn:node1")),
			testEntry("w", "spiffe://alpha.test/nodes/a", "spiffe://alpha.test/web"),
		}, []string{"w"}},
		{"ok/node alias with all the agent's selectors", []datastore.Entry{
			testEntry("alias", testServerStr, "spiffe://alpha.test/nodes/a", agentSelectors...),
			testEntry("w", "spiffe://alpha.test/nodes/a", "spiffe://alpha.test/web"),
		}, []string{"w"}},
		{"none/node alias whose selectors are a superset", []datastore.Entry{
			testEntry("alias", testServerStr, "spiffe://alpha.test/nodes/a", append([]datastore.Selector{testSel("x509pop", "serialnumber:01")}, agentSelectors...)...),
			testEntry("w", "spiffe://alpha.test/nodes/a", "spiffe://alpha.test/web"),
		}, nil},
		{"none/node alias without selectors", []datastore.Entry{
			noSelectorAlias,
			testEntry("w", "spiffe://alpha.test/nodes/a", "spiffe://alpha.test/web"),
		}, nil},
		{"none/expired node alias", []datastore.Entry{
			expiredAlias,
			testEntry("w", "spiffe://alpha.test/nodes/a", "spiffe://alpha.test/web"),
		}, nil},
		{"ok/descendants two levels down", []datastore.Entry{
			testEntry("1", testAgentStr, "spiffe://alpha.test/k8s/node"),
			testEntry("2", "spiffe://alpha.test/k8s/node", "spiffe://alpha.test/k8s/pod"),
			testEntry("3", "spiffe://alpha.test/k8s/pod", "spiffe://alpha.test/k8s/sidecar"),
			testEntry("4", "spiffe://alpha.test/elsewhere", "spiffe://alpha.test/k8s/other"),
		}, []string{"1", "2", "3"}},
		{"ok/cycle ends", []datastore.Entry{
			testEntry("1", testAgentStr, "spiffe://alpha.test/a"),
			testEntry("2", "spiffe://alpha.test/a", "spiffe://alpha.test/b"),
			testEntry("3", "spiffe://alpha.test/b", "spiffe://alpha.test/a"),
			testEntry("4", "spiffe://alpha.test/a", "spiffe://alpha.test/a"),
		}, []string{"1", "2", "3", "4"}},
		{"ok/expired entry and what hangs under it left out", []datastore.Entry{
			expired, unexpired,
			testEntry("child", "spiffe://alpha.test/old", "spiffe://alpha.test/child"),
		}, []string{"later"}},
		{"ok/foreign trust domain left out", []datastore.Entry{
			testEntry("foreign", testAgentStr, "spiffe://beta.test/web"),
			testEntry("under-foreign", "spiffe://beta.test/web", "spiffe://alpha.test/x"),
			testEntry("local", testAgentStr, "spiffe://alpha.test/web"),
		}, []string{"local"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newTestIndex(tt.entries...)
			var got []string
			for _, e := range x.Authorized(entryAgent, agentSelectors) {
				got = append(got, e.ID)
			}
			require.Equal(t, tt.want, got)
			// Lookup agrees with Authorized for every entry.
			for _, e := range tt.entries {
				_, ok := x.Lookup(entryAgent, agentSelectors, e.ID)
				require.Equal(t, slices.Contains(tt.want, e.ID), ok, "Lookup(%q)", e.ID)
			}
		})
	}
}

func TestIndexRebuildSwaps(t *testing.T) {
	x := newTestIndex(testEntry("a", testAgentStr, "spiffe://alpha.test/a"))
	require.Len(t, x.Authorized(entryAgent, nil), 1)
	x.Rebuild([]datastore.Entry{testEntry("b", testAgentStr, "spiffe://alpha.test/b"), testEntry("c", testAgentStr, "spiffe://alpha.test/c")})
	got := x.Authorized(entryAgent, nil)
	require.Len(t, got, 2)
	require.Equal(t, "b", got[0].ID)
	_, ok := x.Lookup(entryAgent, nil, "a")
	require.False(t, ok, "an entry gone after Rebuild")
}

func TestIndexUnknownAgent(t *testing.T) {
	x := newTestIndex(testEntry("a", testAgentStr, "spiffe://alpha.test/a"))
	other := spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/other")
	require.Empty(t, x.Authorized(other, nil))
	_, ok := x.Lookup(other, nil, "a")
	require.False(t, ok)
}

// BenchmarkIndexAuthorized measures one Authorized call among 10,000
// entries and 1,000 agents: each agent has 9 entries of its own and, by its
// cluster selector, a node alias with 9 more under it.
func BenchmarkIndexAuthorized(b *testing.B) {
	const agents, aliases = 1000, 100
	var entries []datastore.Entry
	agentIDs := make([]spiffeid.ID, agents)
	agentSelectors := make([][]datastore.Selector, agents)
	for i := range agents {
		agentIDs[i] = spiffeid.RequireFromStringf("spiffe://alpha.test/spire/agent/x509pop/%d", i)
		agentSelectors[i] = []datastore.Selector{
			testSel("x509pop", fmt.Sprintf("subject:cn:node%d", i)),
			testSel("x509pop", fmt.Sprintf("ca:fingerprint:cluster%d", i%aliases)),
		}
		for j := range 9 {
			entries = append(entries, testEntry(fmt.Sprintf("agent-%d-%d", i, j), agentIDs[i].String(), fmt.Sprintf("spiffe://alpha.test/w/%d/%d", i, j)))
		}
	}
	for i := range aliases {
		aliasID := fmt.Sprintf("spiffe://alpha.test/cluster/%d", i)
		entries = append(entries, testEntry(fmt.Sprintf("alias-%d", i), testServerStr, aliasID, testSel("x509pop", fmt.Sprintf("ca:fingerprint:cluster%d", i))))
		for j := range 9 {
			entries = append(entries, testEntry(fmt.Sprintf("cluster-%d-%d", i, j), aliasID, fmt.Sprintf("spiffe://alpha.test/c/%d/%d", i, j)))
		}
	}
	b.Logf("%d entries", len(entries))
	x := newTestIndex(entries...)
	i := 0
	for b.Loop() {
		if n := len(x.Authorized(agentIDs[i], agentSelectors[i])); n != 18 {
			b.Fatalf("agent %d: %d entries, want 18", i, n)
		}
		i = (i + 1) % agents
	}
}

// TestIndexConcurrentRebuild runs readers against rebuilds; -race checks
// that a reader never sees a snapshot being built.
func TestIndexConcurrentRebuild(t *testing.T) {
	a, b := testEntry("a", testAgentStr, "spiffe://alpha.test/a"), testEntry("b", testAgentStr, "spiffe://alpha.test/b")
	x := newTestIndex(a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if i%2 == 0 {
				x.Rebuild([]datastore.Entry{a, b})
			} else {
				x.Rebuild([]datastore.Entry{a})
			}
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		n := len(x.Authorized(entryAgent, nil))
		require.True(t, n == 1 || n == 2, "a whole snapshot, old or new: %d entries", n)
		_, ok := x.Lookup(entryAgent, nil, "a")
		require.True(t, ok)
	}
}

func TestIndexSharesFederatesWithLists(t *testing.T) {
	a := testEntry("a", testAgentStr, "spiffe://alpha.test/a")
	b := testEntry("b", testAgentStr, "spiffe://alpha.test/b")
	c := testEntry("c", testAgentStr, "spiffe://alpha.test/c")
	a.FederatesWith = []string{"beta.test", "gamma.test"}
	b.FederatesWith = []string{"beta.test", "gamma.test"}
	c.FederatesWith = []string{"beta.test"}
	got := newTestIndex(a, b, c).Authorized(entryAgent, nil)
	require.Len(t, got, 3)
	require.Equal(t, []string{"beta.test", "gamma.test"}, got[0].FederatesWith)
	require.Equal(t, []string{"beta.test", "gamma.test"}, got[1].FederatesWith)
	require.Equal(t, []string{"beta.test"}, got[2].FederatesWith)
	require.Same(t, &got[0].FederatesWith[0], &got[1].FederatesWith[0], "equal lists are held once")
}
