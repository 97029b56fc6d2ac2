package topology

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// Problem is a mistake in the input, with its line.
type Problem struct {
	Line    int    `json:"line"`
	Message string `json:"message"`
}

func (p Problem) String() string { return fmt.Sprintf("line %d: %s", p.Line, p.Message) }

// ProblemsError lists every problem of an input.
type ProblemsError struct{ Problems []Problem }

func (e *ProblemsError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Parse reads a topology description (YAML). Unknown keys and bad values
// are errors with their line; facts that contradict each other are
// returned as warnings and resolved as documented.
func Parse(data []byte) (*Topology, []string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, &ProblemsError{Problems: []Problem{{Line: 1, Message: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	p := &parser{}
	t := &Topology{}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, &ProblemsError{Problems: []Problem{{Line: 1, Message: "expected a mapping with self: and peers:"}}}
	}
	root := p.mapping(doc.Content[0], "top level", []string{"self", "peers"})
	if n, ok := root["self"]; ok {
		t.Self = p.self(n)
	} else {
		p.add(doc.Content[0].Line, "self: is required (our own trust_domain)")
	}
	if n, ok := root["peers"]; ok && n.Kind == yaml.SequenceNode {
		for _, item := range n.Content {
			t.Peers = append(t.Peers, p.peer(item, t.Self))
		}
	} else {
		p.add(doc.Content[0].Line, "peers: is required, a list of the systems we must talk to")
	}
	p.duplicates(t.Peers)
	if len(p.problems) > 0 {
		return nil, p.warnings, &ProblemsError{Problems: p.problems}
	}
	return t, p.warnings, nil
}

type parser struct {
	problems []Problem
	warnings []string
}

func (p *parser) add(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) warn(line int, format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
}

// mapping returns the values of a mapping node by key, reporting unknown
// keys.
func (p *parser) mapping(n *yaml.Node, where string, known []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, "%s must be a mapping", where)
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(known, k.Value) {
			p.add(k.Line, "unknown key %q in %s; known keys: %s", k.Value, where, strings.Join(known, ", "))
			continue
		}
		out[k.Value] = v
	}
	return out
}

func (p *parser) text(n *yaml.Node, key string) string {
	if n.Kind != yaml.ScalarNode {
		p.add(n.Line, "%s must be a single value", key)
		return ""
	}
	return n.Value
}

func (p *parser) boolean(m map[string]*yaml.Node, key string, def bool) bool {
	n, ok := m[key]
	if !ok {
		return def
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		p.add(n.Line, "%s must be true or false, not %q", key, n.Value)
	}
	return b
}

func (p *parser) choice(m map[string]*yaml.Node, key, def string, choices ...string) string {
	n, ok := m[key]
	if !ok {
		return def
	}
	v := p.text(n, key)
	if !slices.Contains(choices, v) {
		p.add(n.Line, "%s %q: use one of %s", key, v, strings.Join(choices, ", "))
	}
	return v
}

func (p *parser) trustDomain(m map[string]*yaml.Node, key string) string {
	n, ok := m[key]
	if !ok {
		return ""
	}
	v := p.text(n, key)
	td, err := spiffeid.TrustDomainFromString(v)
	if err != nil {
		p.add(n.Line, "%s %q is not a trust domain name: %v", key, v, err)
		return v
	}
	return td.Name()
}

var inspections = []string{string(InspectNone), string(InspectTLSProxy), string(InspectWAF)}

func (p *parser) self(n *yaml.Node) Self {
	m := p.mapping(n, "self", []string{"trust_domain", "organisation", "inspection", "public_certificate"})
	s := Self{Line: n.Line, Organisation: scalar(m["organisation"])}
	if s.TrustDomain = p.trustDomain(m, "trust_domain"); s.TrustDomain == "" {
		p.add(n.Line, "self.trust_domain is required, e.g. trust_domain: provisioning.example.com")
	}
	s.Inspection = Inspection(p.choice(m, "inspection", string(InspectNone), inspections...))
	s.PublicCertificate = p.boolean(m, "public_certificate", false)
	return s
}

func (p *parser) peer(n *yaml.Node, self Self) Peer {
	m := p.mapping(n, "a peer", []string{"name", "trust_domain", "same_organisation", "runs_agent", "controls_ca",
		"reachability", "inspection", "air_gapped", "rotation", "public_certificate"})
	pr := Peer{Line: n.Line, Name: scalar(m["name"])}
	if pr.Name == "" {
		p.add(n.Line, "every peer needs a name")
	}
	pr.TrustDomain = p.trustDomain(m, "trust_domain")
	pr.SameOrganisation = p.boolean(m, "same_organisation", false)
	pr.RunsAgent = p.boolean(m, "runs_agent", true)
	pr.ControlsCA = p.boolean(m, "controls_ca", !pr.SameOrganisation)
	pr.Reachability = Reachability(p.choice(m, "reachability", string(ReachBoth),
		string(ReachBoth), string(ReachWeReachThem), string(ReachTheyReachUs), string(ReachNone)))
	pr.Inspection = Inspection(p.choice(m, "inspection", string(InspectNone), inspections...))
	pr.AirGapped = p.boolean(m, "air_gapped", false)
	pr.Rotation = Rotation(p.choice(m, "rotation", string(RotateMonths),
		string(RotateHours), string(RotateDays), string(RotateWeeks), string(RotateMonths), string(RotateYears), string(RotateManual)))
	pr.PublicCertificate = p.boolean(m, "public_certificate", false)
	_, reachSet := m["reachability"]
	p.contradictions(&pr, self, reachSet)
	return pr
}

// contradictions warns about facts that cannot all be true and says how
// they are resolved.
func (p *parser) contradictions(pr *Peer, self Self, reachSet bool) {
	if pr.AirGapped && pr.Reachability != ReachNone {
		if reachSet {
			p.warn(pr.Line, "%s: air_gapped contradicts reachability %s; planned as air-gapped", pr.Name, pr.Reachability)
		}
		pr.Reachability = ReachNone
	}
	if pr.TrustDomain != "" && pr.TrustDomain == self.TrustDomain && !pr.SameOrganisation {
		p.warn(pr.Line, "%s: shares our trust domain but is not in our organisation; one trust domain means one CA, so this is planned as our own", pr.Name)
	}
	if pr.TrustDomain == self.TrustDomain && pr.TrustDomain != "" && pr.ControlsCA {
		p.warn(pr.Line, "%s: shares our trust domain but controls its own CA; a trust domain has one CA, so its CA is ignored", pr.Name)
	}
}

func (p *parser) duplicates(peers []Peer) {
	seen := map[string]int{}
	for _, pr := range peers {
		if line, ok := seen[pr.Name]; ok && pr.Name != "" {
			p.add(pr.Line, "peer name %q is used twice (first on line %d)", pr.Name, line)
		}
		seen[pr.Name] = pr.Line
	}
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}
