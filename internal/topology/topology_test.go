package topology

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

var update = flag.Bool("update", false, "rewrite the golden files and the example plan")

func planOne(t *testing.T, peerYAML string) Decision {
	t.Helper()
	topo, _, err := Parse([]byte("self:\n  trust_domain: us.example\npeers:\n  - name: peer\n"+peerYAML), "")
	require.NoError(t, err)
	plan := Plan(topo)
	require.Len(t, plan, 1)
	return plan[0]
}

func rules(d Decision) []string {
	var ids []string
	for _, r := range d.Reasons {
		ids = append(ids, r.Rule)
	}
	return ids
}

func TestDecisions(t *testing.T) {
	cases := []struct {
		name      string
		peer      string
		mechanism Mechanism
		out, in   Direction
		rules     []string
		warning   string
	}{
		{"ok/same trust domain", "    trust_domain: us.example\n    same_organisation: true\n",
			MechSameTrustDomain, Direction{Exchange: ExchangeNone}, Direction{Exchange: ExchangeNone}, []string{"R1"}, ""},
		{"ok/device without agent, our credentials", "    runs_agent: false\n    controls_ca: false\n",
			MechMintedSVID, Direction{Exchange: ExchangeNone}, Direction{Exchange: ExchangeNone}, []string{"R2"}, ""},
		{"ok/air-gapped device gets a warning", "    runs_agent: false\n    controls_ca: false\n    air_gapped: true\n",
			MechMintedSVID, Direction{Exchange: ExchangeNone}, Direction{Exchange: ExchangeNone}, []string{"R2"}, "R12"},
		{"ok/vendor device CA", "    trust_domain: dev.vendor\n    runs_agent: false\n    controls_ca: true\n",
			MechImportedCA, Direction{Exchange: ExchangeStatic}, Direction{Exchange: ExchangeStatic}, []string{"R3"}, ""},
		{"ok/partner with public cert", "    trust_domain: partner.example\n    public_certificate: true\n",
			MechFederation, Direction{ExchangeDynamic, profile.HTTPSWeb}, Direction{ExchangeDynamic, profile.HTTPSSPIFFE}, []string{"R4", "R7", "R9", "R10"}, ""},
		{"ok/partner behind a WAF", "    trust_domain: partner.example\n    inspection: waf\n",
			MechFederation, Direction{ExchangeDynamic, profile.HTTPSWeb}, Direction{ExchangeDynamic, profile.HTTPSSPIFFE}, []string{"R4", "R7", "R8", "R10"}, ""},
		{"ok/sibling team, same organisation", "    trust_domain: team.us.example\n    same_organisation: true\n    controls_ca: true\n    public_certificate: true\n",
			MechFederation, Direction{ExchangeDynamic, profile.HTTPSSPIFFE}, Direction{ExchangeDynamic, profile.HTTPSSPIFFE}, []string{"R4", "R7", "R10", "R10"}, ""},
		{"ok/only we reach them", "    trust_domain: partner.example\n    reachability: we_reach_them\n",
			MechFederation, Direction{ExchangeDynamic, profile.HTTPSSPIFFE}, Direction{Exchange: ExchangeStatic}, []string{"R4", "R6", "R10"}, ""},
		{"ok/only they reach us", "    trust_domain: partner.example\n    reachability: they_reach_us\n",
			MechFederation, Direction{Exchange: ExchangeStatic}, Direction{ExchangeDynamic, profile.HTTPSSPIFFE}, []string{"R4", "R6", "R10"}, ""},
		{"warn/air gap and fast rotation", "    trust_domain: range.example\n    air_gapped: true\n    rotation: days\n",
			MechFederation, Direction{Exchange: ExchangeStatic}, Direction{Exchange: ExchangeStatic}, []string{"R4", "R5"}, "R11"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := planOne(t, tc.peer)
			require.Equal(t, tc.mechanism, d.Mechanism)
			require.Equal(t, tc.out, d.Outbound, "their bundle to us")
			require.Equal(t, tc.in, d.Inbound, "our bundle to them")
			require.Equal(t, tc.rules, rules(d))
			require.Equal(t, tc.mechanism == MechFederation, d.Federation)
			if tc.warning == "" {
				require.Empty(t, d.Warnings)
			} else {
				require.Len(t, d.Warnings, 1)
				require.True(t, strings.HasPrefix(d.Warnings[0], tc.warning+": "), d.Warnings[0])
			}
			require.NotEmpty(t, d.NextSteps)
		})
	}
}

func TestParseProblems(t *testing.T) {
	cases := []struct {
		name, input string
		line        int
		phrase      string
	}{
		{"fail/not yaml", "self: [", 1, "not valid YAML"},
		{"fail/unknown key", "self:\n  trust_domain: us.example\n  trustdomain: x\npeers: []\n", 3, `unknown key "trustdomain" in self`},
		{"fail/bad enum", "self:\n  trust_domain: us.example\npeers:\n  - name: p\n    reachability: sometimes\n", 5, `reachability "sometimes": use one of both, we_reach_them`},
		{"fail/bad bool", "self:\n  trust_domain: us.example\npeers:\n  - name: p\n    runs_agent: maybe\n", 5, "runs_agent must be true or false"},
		{"fail/bad trust domain", "self:\n  trust_domain: Us Example\npeers: []\n", 2, "is not a trust domain name"},
		{"fail/no name", "self:\n  trust_domain: us.example\npeers:\n  - trust_domain: p.example\n", 4, "every peer needs a name"},
		{"fail/duplicate name", "self:\n  trust_domain: us.example\npeers:\n  - name: p\n  - name: p\n", 5, `peer name "p" is used twice (first on line 4)`},
		{"fail/no self", "peers: []\n", 1, "self: is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.input), "")
			pe, ok := errors.AsType[*yamldoc.Error](err)
			require.True(t, ok, "%v", err)
			var hit bool
			for _, p := range pe.Problems {
				if p.Line == tc.line && strings.Contains(p.Message, tc.phrase) {
					hit = true
				}
			}
			require.True(t, hit, "no problem at line %d containing %q in %v", tc.line, tc.phrase, pe.Problems)
		})
	}
}

func TestContradictionsWarn(t *testing.T) {
	_, warnings, err := Parse([]byte("self:\n  trust_domain: us.example\npeers:\n  - name: p\n    trust_domain: r.example\n    air_gapped: true\n    reachability: both\n"), "")
	require.NoError(t, err)
	require.Equal(t, []string{"line 4: p: air_gapped contradicts reachability both; planned as air-gapped"}, warnings)
}

// TestExamplePlan keeps the checked-in example plan equal to what the
// planner produces, and pins the JSON form.
func TestExamplePlan(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "topology")
	data, err := os.ReadFile(filepath.Join(dir, "provisioning.yaml"))
	require.NoError(t, err)
	topo, warnings, err := Parse(data, "provisioning.yaml")
	require.NoError(t, err)
	require.Empty(t, warnings)
	plan := Plan(topo)
	md := Markdown(topo, plan)
	js, err := json.MarshalIndent(plan, "", "  ")
	require.NoError(t, err)
	for path, got := range map[string]string{
		filepath.Join(dir, "provisioning.plan.md"):          md,
		filepath.Join("testdata", "provisioning.plan.json"): string(js) + "\n",
	} {
		if *update {
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, string(want), got, "%s is out of date: run go test ./internal/topology -update", path)
	}
}

// TestMermaidIsWellFormed checks the diagram's syntax where names could
// break it: node IDs are plain, labels quoted.
func TestMermaidIsWellFormed(t *testing.T) {
	topo := &Topology{Self: Self{TrustDomain: "us.example"}, Peers: []Peer{{Name: `odd "name" | with [brackets]`, RunsAgent: true, ControlsCA: true, Reachability: ReachBoth, TrustDomain: "odd.example"}}}
	out := Mermaid(topo, Plan(topo))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, "flowchart LR", lines[0])
	node := regexp.MustCompile(`^  [A-Za-z0-9_]+\["[^"]*"\]$`)
	edge := regexp.MustCompile(`^  self ---\|"[^"]*"\| [A-Za-z0-9_]+$`)
	for _, l := range lines[1:] {
		require.True(t, node.MatchString(l) || edge.MatchString(l), "malformed line %q", l)
	}
}

// TestRulesAreDocumented keeps docs/topology.md's rule table in step with
// the code's.
func TestRulesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "topology.md"))
	require.NoError(t, err)
	for _, r := range Rules {
		row := "| " + r.ID + " | " + r.Stage + " | " + r.When + " | " + r.Then + " |"
		require.Contains(t, string(doc), row, "docs/topology.md must list rule %s exactly as the code has it", r.ID)
	}
}

// TestMintStepIsGrantedInFull: the suggested mint's -ttl is at most a sixth
// of the default ca_ttl (30 days), which the active authority always has
// left, so the command never prints "lifetime was capped".
func TestMintStepIsGrantedInFull(t *testing.T) {
	topo := &Topology{Self: Self{TrustDomain: "us.example"}, Peers: []Peer{{Name: "terminal", Reachability: ReachNone}}}
	plan := Plan(topo)
	require.Equal(t, MechMintedSVID, plan[0].Mechanism)
	ttl := regexp.MustCompile(`-ttl (\S+)`).FindStringSubmatch(strings.Join(plan[0].NextSteps, "\n"))
	require.NotNil(t, ttl, "the mint step names a -ttl")
	d, err := time.ParseDuration(ttl[1])
	require.NoError(t, err)
	require.LessOrEqual(t, d, 30*24*time.Hour/6)
}

// TestMermaidEdgeUsesTheTableWords: the diagram names each direction as
// the table's columns do, with the same value.
func TestMermaidEdgeUsesTheTableWords(t *testing.T) {
	d := Decision{Peer: "p", TrustDomain: "p.example", Mechanism: MechFederation, Federation: true,
		Outbound: Direction{Exchange: ExchangeDynamic, Profile: "https_web"}, Inbound: Direction{Exchange: ExchangeStatic}}
	topo := &Topology{Self: Self{TrustDomain: "us.example"}}
	md := Markdown(topo, []Decision{d})
	require.Contains(t, md, "| p | p.example | yes | dynamic, https_web | static (files) |")
	require.Contains(t, md, `federation: their bundle to us dynamic, https_web; our bundle to them static (files)`)
}
