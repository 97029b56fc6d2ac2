package telemetry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/agentapi"
	"github.com/treatyhq/treaty/internal/datastore"
)

type staticAgents struct {
	stats    agentapi.Stats
	lastSeen map[spiffeid.ID]time.Time
}

func (a staticAgents) Stats() agentapi.Stats             { return a.stats }
func (a staticAgents) LastSeen(id spiffeid.ID) time.Time { return a.lastSeen[id] }

// countingNodes is a node list that counts how often it is read.
type countingNodes struct {
	nodes []datastore.AttestedNode
	err   error
	reads int
}

func (n *countingNodes) ListAttestedNodes(context.Context) ([]datastore.AttestedNode, error) {
	n.reads++
	return n.nodes, n.err
}

var (
	agentA = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/a")
	agentB = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/b")
	agentC = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/join_token/c")
	agentD = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/join_token/d")
)

func agentFixture(now time.Time) (staticAgents, *countingNodes) {
	src := staticAgents{
		stats: agentapi.Stats{
			Since:        now.Add(-time.Hour),
			Attestations: map[string]map[string]uint64{"x509pop": {agentapi.ResultOK: 2, agentapi.ResultDenied: 1}, agentapi.UnknownAttestor: {agentapi.ResultInvalid: 4}},
			X509SVIDs:    10, JWTSVIDs: 3, AgentSVIDs: 5, Renewals: 1,
			Syncs: agentapi.SyncHistogram{Count: 3, SumSeconds: 0.75, Buckets: []uint64{0, 1, 1, 1, 2, 2, 3, 3, 3, 3}},
		},
		lastSeen: map[spiffeid.ID]time.Time{agentA: now.Add(-10 * time.Second), agentB: now.Add(-90 * time.Second), agentC: now.Add(-2 * time.Hour)},
	}
	nodes := &countingNodes{nodes: []datastore.AttestedNode{
		{SPIFFEID: agentA, SerialNumber: "1"}, {SPIFFEID: agentB, SerialNumber: "2"},
		{SPIFFEID: agentC}, // banned: not seen for hours, as expected
	}}
	return src, nodes
}

func TestAgentMetrics(t *testing.T) {
	now := time.Now()
	src, nodes := agentFixture(now)
	s := New(Config{Agents: src, Nodes: nodes})
	_, body := get(t, s.http.Handler, "/metrics")
	for _, want := range []string{
		`treaty_agents{state="active"} 2`,
		`treaty_agents{state="banned"} 1`,
		`treaty_agent_attestations_total{result="ok",type="x509pop"} 2`,
		`treaty_agent_attestations_total{result="denied",type="x509pop"} 1`,
		`treaty_agent_attestations_total{result="invalid",type="unknown"} 4`,
		`treaty_agent_svids_issued_total{kind="x509"} 10`,
		`treaty_agent_svids_issued_total{kind="jwt"} 3`,
		`treaty_agent_svids_issued_total{kind="agent"} 5`,
		`treaty_agent_renewals_total 1`,
		`treaty_agent_sync_duration_seconds_bucket{le="0.005"} 1`,
		`treaty_agent_sync_duration_seconds_bucket{le="+Inf"} 3`,
		`treaty_agent_sync_duration_seconds_sum 0.75`,
		`treaty_agent_sync_duration_seconds_count 3`,
		`treaty_agent_last_seen_age_seconds 90`,
	} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, agentA.String(), "no series per agent")
}

func TestAgentMetricsOldestLastSeen(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name  string
		nodes []datastore.AttestedNode
		want  float64 // -1: absent
	}{
		{"ok/oldest active", []datastore.AttestedNode{{SPIFFEID: agentA, SerialNumber: "1"}, {SPIFFEID: agentB, SerialNumber: "2"}}, 90},
		{"ok/not seen since start counts from the start", []datastore.AttestedNode{{SPIFFEID: agentA, SerialNumber: "1"}, {SPIFFEID: agentD, SerialNumber: "4"}}, 3600},
		{"ok/banned left out", []datastore.AttestedNode{{SPIFFEID: agentA, SerialNumber: "1"}, {SPIFFEID: agentC}}, 10},
		{"ok/no active agent, no series", []datastore.AttestedNode{{SPIFFEID: agentC}}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, _ := agentFixture(now)
			c := &agentCollector{source: src, nodes: &countingNodes{nodes: tc.nodes}, now: func() time.Time { return now }}
			got := gaugeOf(t, c, "treaty_agent_last_seen_age_seconds")
			require.Equal(t, tc.want, got)
		})
	}
}

func TestAgentMetricsNodesCached(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	src, nodes := agentFixture(now)
	c := &agentCollector{source: src, nodes: nodes, now: func() time.Time { return now }}
	gaugeOf(t, c, "treaty_agents")
	now = now.Add(nodesTTL - time.Second)
	gaugeOf(t, c, "treaty_agents")
	require.Equal(t, 1, nodes.reads, "read once within the TTL")
	now = now.Add(time.Second)
	gaugeOf(t, c, "treaty_agents")
	require.Equal(t, 2, nodes.reads, "read again after it")

	nodes.err = errors.New("database is locked")
	now = now.Add(nodesTTL)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	_, err := reg.Gather()
	require.ErrorContains(t, err, "database is locked", "a store error shows in the scrape")
}

// gaugeOf gathers c and returns the first value of the metric named name,
// or -1 when it is absent.
func gaugeOf(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
