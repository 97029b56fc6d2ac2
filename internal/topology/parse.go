package topology

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// schema lists the keys of a topology file.
var schema = yamldoc.Schema{
	"":     {Keys: []string{"self", "peers"}},
	"self": {Keys: []string{"trust_domain", "organisation", "inspection", "public_certificate"}, Example: "self: {trust_domain: provisioning.example.com}"},
	"peers": {Keys: []string{"name", "trust_domain", "same_organisation", "runs_agent", "controls_ca",
		"reachability", "inspection", "air_gapped", "rotation", "public_certificate"}, Example: "- {name: billing, trust_domain: billing.example.com}"},
}

// readOptions say what a topology file holds, for the messages about one
// that does not.
var readOptions = yamldoc.Options{
	Needs:       "self: (our own trust_domain) and peers: (the systems we must talk to)",
	TopLevel:    "with self: and peers:",
	OneDocument: "a topology file describes one trust domain and its peers",
}

// Parse reads a topology description (YAML) from data, the content of the
// file named file (empty for none), which problems name. Unknown keys and
// bad values are problems with their line, returned together as a
// *yamldoc.Error; facts that contradict each other are returned as
// warnings and resolved as documented.
func Parse(data []byte, file string) (*Topology, []string, error) {
	doc, root := yamldoc.Read(file, data, readOptions)
	if root == nil {
		return nil, nil, &yamldoc.Error{Problems: doc.Problems}
	}
	p := &parser{doc: doc}
	t := &Topology{}
	m := doc.Mapping(root, schema, "", "")
	if e, ok := m["self"]; ok {
		t.Self = p.self(e)
	} else {
		p.add(root.Line, "self: is required (our own trust_domain)")
	}
	if peers := yamldoc.Resolve(m["peers"].Value); peers != nil && peers.Kind == yaml.SequenceNode {
		for i, item := range peers.Content {
			t.Peers = append(t.Peers, p.peer(item, fmt.Sprintf("peers[%d]", i), t.Self))
		}
	} else {
		p.add(root.Line, "peers: is required, a list of the systems we must talk to")
	}
	p.duplicates(t.Peers)
	if len(doc.Problems) > 0 {
		return nil, p.warnings, &yamldoc.Error{Problems: doc.Problems}
	}
	return t, p.warnings, nil
}

// parser turns the entries of a topology file into a Topology, recording
// problems in doc and warnings about contradictions.
type parser struct {
	doc      *yamldoc.Document
	warnings []string
}

func (p *parser) add(line int, format string, args ...any) {
	p.doc.Add(line, "", format, args...)
}

func (p *parser) warn(line int, format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
}

// text returns the text of the key key of m, a mapping at field.
func (p *parser) text(m map[string]yamldoc.Entry, field, key string) string {
	s, _ := p.doc.Text(m[key], yamldoc.Join(field, key))
	return s
}

// boolean returns the boolean at key of m, a mapping at field, or def.
func (p *parser) boolean(m map[string]yamldoc.Entry, field, key string, def bool) bool {
	p.doc.Bool(m[key], yamldoc.Join(field, key), &def)
	return def
}

// choice returns the text at key of m, a mapping at field, which must be
// one of choices, or def.
func (p *parser) choice(m map[string]yamldoc.Entry, field, key, def string, choices ...string) string {
	e, ok := m[key]
	if !ok {
		return def
	}
	v := p.text(m, field, key)
	if !slices.Contains(choices, v) {
		p.add(e.Line(), "%s %q: use one of %s", yamldoc.Join(field, key), v, strings.Join(choices, ", "))
	}
	return v
}

// trustDomain returns the trust domain name at key of m, a mapping at
// field, or "".
func (p *parser) trustDomain(m map[string]yamldoc.Entry, field, key string) string {
	e, ok := m[key]
	if !ok {
		return ""
	}
	v := p.text(m, field, key)
	td, err := spiffeid.TrustDomainFromString(v)
	if err != nil {
		p.add(e.Line(), "%s %q is not a trust domain name: %v", yamldoc.Join(field, key), v, err)
		return v
	}
	return td.Name()
}

var inspections = []string{string(InspectNone), string(InspectTLSProxy), string(InspectWAF)}

func (p *parser) self(e yamldoc.Entry) Self {
	n := yamldoc.Resolve(e.Value)
	m := p.doc.Mapping(n, schema, "self", "self")
	s := Self{Line: e.Line(), Organisation: p.text(m, "self", "organisation")}
	if s.TrustDomain = p.trustDomain(m, "self", "trust_domain"); s.TrustDomain == "" {
		p.add(s.Line, "self.trust_domain is required, e.g. trust_domain: provisioning.example.com")
	}
	s.Inspection = Inspection(p.choice(m, "self", "inspection", string(InspectNone), inspections...))
	s.PublicCertificate = p.boolean(m, "self", "public_certificate", false)
	return s
}

// peer decodes the peer n, the item of peers at field.
func (p *parser) peer(n *yaml.Node, field string, self Self) Peer {
	m := p.doc.Mapping(n, schema, "peers", field)
	pr := Peer{Line: n.Line, Name: p.text(m, field, "name")}
	if pr.Name == "" {
		p.add(n.Line, "every peer needs a name")
	}
	pr.TrustDomain = p.trustDomain(m, field, "trust_domain")
	pr.SameOrganisation = p.boolean(m, field, "same_organisation", false)
	pr.RunsAgent = p.boolean(m, field, "runs_agent", true)
	pr.ControlsCA = p.boolean(m, field, "controls_ca", !pr.SameOrganisation)
	pr.Reachability = Reachability(p.choice(m, field, "reachability", string(ReachBoth),
		string(ReachBoth), string(ReachWeReachThem), string(ReachTheyReachUs), string(ReachNone)))
	pr.Inspection = Inspection(p.choice(m, field, "inspection", string(InspectNone), inspections...))
	pr.AirGapped = p.boolean(m, field, "air_gapped", false)
	pr.Rotation = Rotation(p.choice(m, field, "rotation", string(RotateMonths),
		string(RotateHours), string(RotateDays), string(RotateWeeks), string(RotateMonths), string(RotateYears), string(RotateManual)))
	pr.PublicCertificate = p.boolean(m, field, "public_certificate", false)
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
