package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/agentapi"
	"github.com/treatyhq/treaty/internal/datastore"
)

// AgentSource reports the agent API's activity (agentapi.Server). Its
// methods are safe for concurrent use.
type AgentSource interface {
	Stats() agentapi.Stats
	// LastSeen is zero for an agent not seen since the server started.
	LastSeen(id spiffeid.ID) time.Time
}

// NodeLister lists the attested nodes (the store).
type NodeLister interface {
	ListAttestedNodes(ctx context.Context) ([]datastore.AttestedNode, error)
}

// nodesTTL is how long the attested nodes read from the store are used for:
// a scrape every second reads the store at most every nodesTTL.
const nodesTTL = 5 * time.Second

var (
	descAgents = prometheus.NewDesc("treaty_agents",
		"Attested agents by state (active, banned), from the store.", []string{"state"}, nil)
	descAttestations = prometheus.NewDesc("treaty_agent_attestations_total",
		"AttestAgent calls by attestor type (unknown: a type this server has no attestor for) and result (ok, denied, invalid, error).", []string{"type", "result"}, nil)
	descSVIDsIssued = prometheus.NewDesc("treaty_agent_svids_issued_total",
		"SVIDs issued to agents: x509 and jwt for their workloads, agent for the agents themselves (attestation and renewal).", []string{"kind"}, nil)
	descRenewals = prometheus.NewDesc("treaty_agent_renewals_total",
		"Agent SVIDs renewed (RenewAgent, agents that cannot attest again).", nil, nil)
	descSyncDuration = prometheus.NewDesc("treaty_agent_sync_duration_seconds",
		"How long SyncAuthorizedEntries streams lasted, whatever their outcome.", nil, nil)
	descOldestLastSeen = prometheus.NewDesc("treaty_agent_last_seen_age_seconds",
		"Seconds since the active agent heard from longest ago last made an authorized call; kept in memory, so an agent not seen since the server started counts from the start. Absent without active agents.", nil, nil)
)

// agentCollector turns the agent API's counters and the attested nodes
// into metrics at scrape time: no series per agent, however many there are.
type agentCollector struct {
	source AgentSource
	nodes  NodeLister
	now    func() time.Time

	mu     sync.Mutex
	read   time.Time // when summary was read; zero: never
	active []spiffeid.ID
	banned int
	err    error
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAgents, descAttestations, descSVIDsIssued, descRenewals, descSyncDuration, descOldestLastSeen} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.source.Stats()
	for typ, byResult := range st.Attestations {
		for result, n := range byResult {
			ch <- prometheus.MustNewConstMetric(descAttestations, prometheus.CounterValue, float64(n), typ, result)
		}
	}
	ch <- prometheus.MustNewConstMetric(descSVIDsIssued, prometheus.CounterValue, float64(st.X509SVIDs), "x509")
	ch <- prometheus.MustNewConstMetric(descSVIDsIssued, prometheus.CounterValue, float64(st.JWTSVIDs), "jwt")
	ch <- prometheus.MustNewConstMetric(descSVIDsIssued, prometheus.CounterValue, float64(st.AgentSVIDs), "agent")
	ch <- prometheus.MustNewConstMetric(descRenewals, prometheus.CounterValue, float64(st.Renewals))
	buckets := make(map[float64]uint64, len(agentapi.SyncBuckets))
	for i, le := range agentapi.SyncBuckets {
		buckets[le] = st.Syncs.Buckets[i]
	}
	ch <- prometheus.MustNewConstHistogram(descSyncDuration, st.Syncs.Count, st.Syncs.SumSeconds, buckets)
	c.collectNodes(ch, st.Since)
}

// collectNodes reports the agents by state and the oldest last-seen time
// among the active ones; a store that cannot be read leaves both out
// (the scrape shows an error for them).
func (c *agentCollector) collectNodes(ch chan<- prometheus.Metric, since time.Time) {
	if c.nodes == nil {
		return
	}
	now := c.now()
	active, banned, err := c.summary(now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descAgents, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(len(active)), "active")
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(banned), "banned")
	if len(active) == 0 {
		return
	}
	oldest := now
	for _, id := range active {
		seen := c.source.LastSeen(id)
		if seen.IsZero() {
			seen = since
		}
		if seen.Before(oldest) {
			oldest = seen
		}
	}
	ch <- prometheus.MustNewConstMetric(descOldestLastSeen, prometheus.GaugeValue, now.Sub(oldest).Seconds())
}

// summary returns the active agents and the number of banned ones, read
// from the store at most every nodesTTL.
func (c *agentCollector) summary(now time.Time) ([]spiffeid.ID, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.read.IsZero() && now.Sub(c.read) < nodesTTL {
		return c.active, c.banned, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodesTTL)
	defer cancel()
	nodes, err := c.nodes.ListAttestedNodes(ctx)
	c.read, c.active, c.banned, c.err = now, nil, 0, err
	for _, n := range nodes {
		if n.Banned() {
			c.banned++
		} else {
			c.active = append(c.active, n.SPIFFEID)
		}
	}
	return c.active, c.banned, c.err
}
