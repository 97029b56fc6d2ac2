// Package dashboard renders a read-only web page of a server's state: the
// trust domain, our authorities on a timeline, every partner with its
// freshness, a federation graph, recent authority events and the attested
// agents. The page is
// plain server-rendered HTML with inline CSS and SVG, no JavaScript and no
// external assets, so it works offline; it reloads itself every few
// seconds.
package dashboard

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/workloadapi"
)

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago":  ago,
	"half": func(n int) int { return n / 2 },
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
}).Parse(pageHTML))

// Config says where the dashboard reads from.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Authorities func(kind datastore.AuthorityKind) []ca.AuthorityInfo
	Federation  func() []federation.Status
	Journal     func(ctx context.Context, limit int) ([]datastore.JournalEvent, error)
	// Gaps are the entries federating with a trust domain the server holds
	// no bundle for, each with that trust domain.
	Gaps func() []workloadapi.Gap
	// Agents, when set, lists the attested nodes for the agents section
	// (absent otherwise); LastSeen, when set, says when each agent last
	// made an authorized call (zero: not since the server started).
	Agents   func(ctx context.Context) ([]datastore.AttestedNode, error)
	LastSeen func(id spiffeid.ID) time.Time
	Now      func() time.Time
	Logger   *slog.Logger
}

// Handler serves the page.
func Handler(cfg Config) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		view, err := build(r.Context(), cfg)
		if err != nil {
			cfg.Logger.Error("dashboard", "error", err)
			http.Error(w, "the dashboard cannot read the server's state; see the server log", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		if err := page.Execute(w, view); err != nil {
			cfg.Logger.Error("dashboard render", "error", err)
		}
	})
}

type view struct {
	TrustDomain string
	Now         time.Time
	Authorities []authorityRow
	Partners    []federation.Status
	Graph       graph
	Events      []datastore.JournalEvent
	Gaps        []workloadapi.Gap
	// MoreGaps counts the gaps beyond the first maxGapRows.
	MoreGaps int
	Counts   map[string]int
	Agents   *agentSection
}

type authorityRow struct {
	ca.AuthorityInfo
	Kind string
	// Elapsed is how much of the lifetime has passed, 0 to 100.
	Elapsed int
}

func build(ctx context.Context, cfg Config) (*view, error) {
	now := cfg.Now()
	v := &view{TrustDomain: cfg.TrustDomain.Name(), Now: now, Counts: map[string]int{}}
	v.Gaps, v.MoreGaps = firstGaps(cfg.Gaps())
	for _, kind := range []datastore.AuthorityKind{datastore.KindX509, datastore.KindJWT} {
		for _, a := range cfg.Authorities(kind) {
			life := a.ExpiresAt.Sub(a.NotBefore)
			elapsed := 0
			if life > 0 {
				elapsed = int(math.Round(100 * float64(now.Sub(a.NotBefore)) / float64(life)))
			}
			v.Authorities = append(v.Authorities, authorityRow{AuthorityInfo: a, Kind: string(kind), Elapsed: min(max(elapsed, 0), 100)})
		}
	}
	v.Partners = cfg.Federation()
	slices.SortFunc(v.Partners, func(a, b federation.Status) int { return strings.Compare(a.TrustDomain, b.TrustDomain) })
	for _, p := range v.Partners {
		v.Counts[string(p.State)]++
	}
	v.Graph = layout(v.TrustDomain, v.Partners)
	events, err := cfg.Journal(ctx, 20)
	if err != nil {
		return nil, fmt.Errorf("read the authority journal: %w", err)
	}
	v.Events = events
	if cfg.Agents != nil {
		if v.Agents, err = agents(ctx, cfg, now); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// graph is the federation drawn as a star: us in the middle, partners on
// a circle, edges coloured by state.
type graph struct {
	Size  int
	Us    node
	Nodes []node
}

type node struct {
	X, Y  int
	Label string
	State string
	// W is the width of the label's box (the centre node only).
	W int
}

func layout(us string, partners []federation.Status) graph {
	const size, radius = 520, 200
	g := graph{Size: size, Us: node{X: size / 2, Y: size / 2, Label: us, State: "us", W: 8*len(us) + 24}}
	for i, p := range partners {
		angle := 2*math.Pi*float64(i)/float64(max(len(partners), 1)) - math.Pi/2
		g.Nodes = append(g.Nodes, node{
			X: size/2 + int(radius*math.Cos(angle)), Y: size/2 + int(radius*math.Sin(angle)),
			Label: p.TrustDomain, State: string(p.State),
		})
	}
	return g
}

// maxGapRows is how many federation gaps the page lists; the rest are
// counted.
const maxGapRows = 200

// firstGaps sorts the gaps by trust domain, then entry, and keeps the
// first maxGapRows.
func firstGaps(gaps []workloadapi.Gap) ([]workloadapi.Gap, int) {
	gaps = slices.Clone(gaps)
	slices.SortFunc(gaps, func(a, b workloadapi.Gap) int {
		return cmp.Or(strings.Compare(a.TrustDomain, b.TrustDomain), strings.Compare(a.EntryID, b.EntryID))
	})
	if len(gaps) > maxGapRows {
		return gaps[:maxGapRows], len(gaps) - maxGapRows
	}
	return gaps, 0
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

// maxAgentRows is how many agents the page lists; the rest are counted.
const maxAgentRows = 200

// agentSection is the attested agents: the first maxAgentRows by SPIFFE
// ID, and how many there are.
type agentSection struct {
	Rows          []agentRow
	Total, Banned int
	More          int
}

type agentRow struct {
	SPIFFEID        string
	AttestationType string
	SVIDExpiry      time.Time
	Banned          bool
	CanReattest     bool
	Version         string
	// LastSeen is how long ago the agent last called, "not since start"
	// or "" when unknown.
	LastSeen string
}

func agents(ctx context.Context, cfg Config, now time.Time) (*agentSection, error) {
	nodes, err := cfg.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the attested agents: %w", err)
	}
	sec := &agentSection{Total: len(nodes), More: max(len(nodes)-maxAgentRows, 0)}
	for i, n := range nodes {
		if n.Banned() {
			sec.Banned++
		}
		if i < maxAgentRows {
			sec.Rows = append(sec.Rows, agentRow{
				SPIFFEID: n.SPIFFEID.String(), AttestationType: n.AttestationType, SVIDExpiry: n.NotAfter,
				Banned: n.Banned(), CanReattest: n.CanReattest, Version: n.AgentVersion, LastSeen: lastSeen(cfg.LastSeen, n.SPIFFEID, now),
			})
		}
	}
	return sec, nil
}

func lastSeen(seen func(spiffeid.ID) time.Time, id spiffeid.ID, now time.Time) string {
	if seen == nil {
		return ""
	}
	t := seen(id)
	if t.IsZero() {
		return "not since start"
	}
	return max(now.Sub(t), 0).Round(time.Second).String() + " ago"
}
