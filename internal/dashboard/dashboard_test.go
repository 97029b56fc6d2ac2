package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/workloadapi"
)

var (
	agentSeen   = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/node-1")
	agentBanned = spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/join_token/t")
)

func TestPage(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h := Handler(Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("alpha.test"),
		Authorities: func(kind datastore.AuthorityKind) []ca.AuthorityInfo {
			return []ca.AuthorityInfo{{ID: "id-" + string(kind), State: datastore.StateActive, NotBefore: now.Add(-time.Hour), ExpiresAt: now.Add(3 * time.Hour)}}
		},
		Federation: func() []federation.Status {
			return []federation.Status{
				{TrustDomain: "beta.test", State: federation.StateHealthy, HasBundle: true, Sequence: 4},
				{TrustDomain: "evil.test", State: federation.StateStale, LastError: `<script>alert("x")</script>`},
			}
		},
		Journal: func(context.Context, int) ([]datastore.JournalEvent, error) {
			return []datastore.JournalEvent{{At: now, Kind: datastore.KindX509, AuthorityID: "id-x509", Event: "activated"}}, nil
		},
		Gaps: func() []workloadapi.Gap {
			return []workloadapi.Gap{{EntryID: "e-1", SPIFFEID: "spiffe://alpha.test/svc/a", TrustDomain: "nowhere.test"}}
		},
		Agents: func(context.Context) ([]datastore.AttestedNode, error) {
			return []datastore.AttestedNode{
				{SPIFFEID: agentSeen, AttestationType: "x509pop", SerialNumber: "1", NotAfter: now.Add(time.Hour), CanReattest: true, AgentVersion: "1.15.3"},
				{SPIFFEID: agentBanned, AttestationType: "join_token"},
			}, nil
		},
		LastSeen: func(id spiffeid.ID) time.Time {
			if id == agentSeen {
				return now.Add(-42 * time.Second)
			}
			return time.Time{}
		},
		Now: func() time.Time { return now },
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	page := string(body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'", "no external assets, no scripts")
	require.Contains(t, page, `<tr class="partner" data-trust-domain="beta.test" data-state="healthy">`)
	require.Contains(t, page, `data-trust-domain="evil.test" data-state="stale"`)
	require.NotContains(t, page, "<script>", "partner errors are escaped")
	require.Contains(t, page, `<tr class="authority" data-kind="x509" data-state="active">`)
	require.Contains(t, page, `style="width: 25%"`, "an hour of four has passed")
	require.Contains(t, page, "1 entry federation gap(s)")
	require.Contains(t, page, `<tr class="gap" data-entry-id="e-1" data-trust-domain="nowhere.test"><td><code>e-1</code></td><td><code>spiffe://alpha.test/svc/a</code></td><td>nowhere.test</td></tr>`,
		"each gap names its entry and the trust domain it lacks a bundle for")
	require.Contains(t, page, `<text id="graph-us"`, "our trust domain is named in the graph's centre")
	require.Regexp(t, `<text id="graph-us"[^>]*>alpha\.test</text>`, page)
	require.Contains(t, page, "activated <code>id-x509</code>")
	require.Contains(t, page, `<p class="meta" id="agent-counts">2 attested agent(s) · 1 banned`)
	require.Contains(t, page, `<tr class="agent" data-spiffe-id="spiffe://alpha.test/spire/agent/x509pop/node-1" data-banned="false">`)
	require.Contains(t, page, `<td>2026-01-01 13:00:00Z</td>`, "the SVID expiry")
	require.Contains(t, page, `<td>yes</td><td>1.15.3</td><td>42s ago</td>`)
	require.Contains(t, page, `data-spiffe-id="spiffe://alpha.test/spire/agent/join_token/t" data-banned="true">`)
	require.Contains(t, page, `<td>no (renews)</td><td>—</td><td>not since start</td>`)
	require.NotContains(t, page, `id="agents-more"`)
	require.NotContains(t, page, "http://", "no external assets")
	require.NotContains(t, page, "https://")
}

func render(t *testing.T, cfg Config) string {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(cfg).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/dashboard", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

func minimalConfig() Config {
	return Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("alpha.test"),
		Authorities: func(datastore.AuthorityKind) []ca.AuthorityInfo { return nil },
		Federation:  func() []federation.Status { return nil },
		Journal:     func(context.Context, int) ([]datastore.JournalEvent, error) { return nil, nil },
		Gaps:        func() []workloadapi.Gap { return nil },
	}
}

func TestPageAgents(t *testing.T) {
	many := make([]datastore.AttestedNode, 250)
	for i := range many {
		many[i] = datastore.AttestedNode{SPIFFEID: spiffeid.RequireFromSegments(spiffeid.RequireTrustDomainFromString("alpha.test"), "spire", "agent", "n", fmt.Sprint(i)), SerialNumber: "1"}
	}
	for _, tc := range []struct {
		name   string
		nodes  []datastore.AttestedNode
		rows   int
		expect []string
		absent []string
	}{
		{"ok/capped at 200 rows", many, maxAgentRows, []string{`250 attested agent(s)`, "<td>—</td><td>—</td></tr>" /* no version, no last-seen source */, `<tr id="agents-more"><td colspan="7">… and 50 more: treaty agent list</td></tr>`}, nil},
		{"ok/none yet", nil, 0, []string{`0 attested agent(s)`, `No agents yet`}, []string{`id="agents-more"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := minimalConfig()
			cfg.Agents = func(context.Context) ([]datastore.AttestedNode, error) { return tc.nodes, nil }
			page := render(t, cfg)
			require.Equal(t, tc.rows, strings.Count(page, `<tr class="agent" `))
			for _, want := range tc.expect {
				require.Contains(t, page, want)
			}
			for _, not := range tc.absent {
				require.NotContains(t, page, not)
			}
		})
	}
}

func TestPageWithoutAgentAPI(t *testing.T) {
	require.NotContains(t, render(t, minimalConfig()), `id="agents"`, "no agent API, no section")
}

func TestPageAgentsStoreError(t *testing.T) {
	cfg := minimalConfig()
	cfg.Agents = func(context.Context) ([]datastore.AttestedNode, error) { return nil, errors.New("database is locked") }
	rec := httptest.NewRecorder()
	Handler(cfg).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/dashboard", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.NotContains(t, rec.Body.String(), "database is locked", "details go to the log")
}
