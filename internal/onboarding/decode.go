package onboarding

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// The resource type spire-controller-manager reads; an onboarding file
// holds one of these or just its spec.
const (
	APIVersion = "spire.spiffe.io/v1alpha1"
	Kind       = "ClusterFederatedTrustDomain"
)

// section names the keys a mapping of the file may hold.
type section struct {
	name  string   // the key of the mapping, for messages
	where string   // where its keys are, for messages
	keys  []string // nil accepts any key
	// holdsSpec is set on a resource, whose spec keys belong under spec.
	holdsSpec bool
	// example shows the mapping written out, for messages.
	example string
}

// specKeys are the keys of a ClusterFederatedTrustDomain spec, plus
// treaty's bundleEndpointURLs.
var specKeys = []string{
	"className", "trustDomain", "bundleEndpointURL", "bundleEndpointURLs",
	"bundleEndpointProfile", "trustDomainBundle",
}

var (
	resourceSection = section{
		name:      "the file",
		where:     "at the top level",
		keys:      []string{"apiVersion", "kind", "metadata", "spec", "status"},
		holdsSpec: true,
	}
	bareSection = section{name: "the file", where: "at the top level", keys: specKeys}
	specSection = section{
		name:    "spec",
		where:   "in spec",
		keys:    specKeys,
		example: "spec: {trustDomain: partner.example, bundleEndpointURL: https://spire.partner.example, bundleEndpointProfile: {type: https_web}}",
	}
	profileSection = section{
		name:    "bundleEndpointProfile",
		where:   "in bundleEndpointProfile",
		keys:    []string{"type", "endpointSPIFFEID"},
		example: "bundleEndpointProfile: {type: https_web}",
	}
	// metadataSection accepts any key: labels, annotations, namespace and
	// the rest of Kubernetes object metadata are of no concern here.
	metadataSection = section{name: "metadata", example: "metadata: {name: partner-example}"}
)

// value is a scalar of the file. line is the line of its key, 0 when the
// key is absent; bad means a problem with it was already reported.
type value struct {
	name string
	text string
	line int
	bad  bool
}

// lineOr returns the line of v, or line when v is absent.
func (v value) lineOr(line int) int {
	if v.line > 0 {
		return v.line
	}
	return line
}

// rawSpec is a spec as written, before its values are checked.
type rawSpec struct {
	line               int // where the spec starts, for keys it lacks
	className          value
	trustDomain        value
	bundleEndpointURL  value
	bundleEndpointURLs []value
	urlsLine           int   // line of the bundleEndpointURLs key
	profile            value // only line and bad are used
	profileType        value
	endpointSPIFFEID   value
	trustDomainBundle  value
}

// entry is one key of a mapping with its value.
type entry struct {
	key, value *yaml.Node
}

// decoder walks the node tree of one file. It knows the line of every key
// and records a problem and carries on instead of stopping at the first.
type decoder struct {
	ps *problems
}

// file decodes the top-level mapping root: a whole resource when it has
// any of the resource's keys, else a bare spec. It returns the name in the
// metadata, if any, and the spec, or nil when there is none to check.
func (d *decoder) file(root *yaml.Node) (name string, spec *rawSpec) {
	isResource := slices.ContainsFunc(resourceSection.keys, func(key string) bool { return lookup(root, key) != nil })
	if !isResource {
		return "", d.spec(root, root.Line, bareSection)
	}
	if k := resolve(lookup(root, "kind")); k != nil && k.Kind == yaml.ScalarNode && !isNull(k) && k.Value != Kind {
		// Another kind's keys would only add noise to this problem.
		d.ps.add(k.Line, "kind %s is not %s; an onboarding directory holds only %s resources", quote(k.Value), Kind, Kind)
		return "", nil
	}
	return d.resource(d.mapping(root, resourceSection), root.Line)
}

// resource decodes the entries m of a ClusterFederatedTrustDomain that
// starts on line.
func (d *decoder) resource(m map[string]entry, line int) (name string, spec *rawSpec) {
	d.text(m["kind"], "kind") // only reports a kind that is not text
	if v := d.text(m["apiVersion"], "apiVersion"); v.text != "" && v.text != APIVersion {
		d.ps.add(v.line, "apiVersion %s is not %s", quote(v.text), APIVersion)
	}
	name = d.metadata(m["metadata"])
	e, ok := m["spec"]
	if !ok {
		d.ps.add(line, "spec is required: a %s needs spec.trustDomain, spec.bundleEndpointURL and spec.bundleEndpointProfile", Kind)
		return name, nil
	}
	return name, d.spec(e.value, e.key.Line, specSection)
}

// lookup returns the value of the first key of the mapping n, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// metadata returns metadata.name, the only metadata treaty uses.
func (d *decoder) metadata(e entry) string {
	if e.key == nil {
		return ""
	}
	m := d.mapping(e.value, metadataSection)
	return d.text(m["name"], "metadata.name").text
}

// spec decodes the spec mapping n, which starts on line.
func (d *decoder) spec(n *yaml.Node, line int, sec section) *rawSpec {
	m := d.mapping(n, sec)
	if m == nil {
		return nil
	}
	s := &rawSpec{line: line}
	s.className = d.text(m["className"], "className")
	s.trustDomain = d.text(m["trustDomain"], "trustDomain")
	s.bundleEndpointURL = d.text(m["bundleEndpointURL"], "bundleEndpointURL")
	s.bundleEndpointURLs, s.urlsLine = d.list(m["bundleEndpointURLs"], "bundleEndpointURLs")
	s.trustDomainBundle = d.text(m["trustDomainBundle"], "trustDomainBundle")
	d.profile(m["bundleEndpointProfile"], s)
	return s
}

func (d *decoder) profile(e entry, s *rawSpec) {
	if e.key == nil {
		return
	}
	s.profile = value{name: profileSection.name, line: e.key.Line}
	m := d.mapping(e.value, profileSection)
	if m == nil {
		s.profile.bad = true
		return
	}
	s.profileType = d.text(m["type"], "bundleEndpointProfile.type")
	s.endpointSPIFFEID = d.text(m["endpointSPIFFEID"], "bundleEndpointProfile.endpointSPIFFEID")
}

// mapping returns the entries of the mapping n by key, reporting unknown,
// duplicated and merge keys. A null n is an empty mapping; any other
// value that is not a mapping gives nil and a problem.
func (d *decoder) mapping(n *yaml.Node, sec section) map[string]entry {
	n = resolve(n)
	switch {
	case n == nil:
		return nil
	case isNull(n):
		return map[string]entry{}
	case n.Kind != yaml.MappingNode:
		d.ps.add(n.Line, "%s must be a mapping, got %s; write it like %s", sec.name, describe(n), sec.example)
		return nil
	}
	m := make(map[string]entry, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		d.entry(entry{key: resolve(n.Content[i]), value: n.Content[i+1]}, sec, m)
	}
	return m
}

// entry adds e to the entries m of section sec, or reports why not.
func (d *decoder) entry(e entry, sec section, m map[string]entry) {
	k := e.key
	switch {
	case k == nil || k.Kind != yaml.ScalarNode:
		d.ps.add(lineOf(e.key, e.value), "keys must be plain words, got %s", describe(k))
	case k.Tag == "!!merge":
		d.ps.add(k.Line, "merge keys (<<) are not supported; write the keys out")
	case sec.keys != nil && !slices.Contains(sec.keys, k.Value):
		d.ps.add(k.Line, "%s", unknownKey(sec, k.Value))
	case m[k.Value].key != nil:
		d.ps.add(k.Line, "duplicate key %s; it is already set on line %d", quote(k.Value), m[k.Value].key.Line)
	default:
		m[k.Value] = e
	}
}

// unknownKey says that key is not one of sec's and suggests what was
// meant.
func unknownKey(sec section, key string) string {
	msg := fmt.Sprintf("unknown key %s %s; the known keys are %s", quote(key), sec.where, strings.Join(sec.keys, ", "))
	if i := slices.IndexFunc(sec.keys, func(k string) bool { return strings.EqualFold(k, key) }); i >= 0 {
		return msg + fmt.Sprintf("; did you mean %s? keys are case-sensitive", sec.keys[i])
	}
	if sec.holdsSpec && slices.Contains(specKeys, key) {
		return msg + "; move it under spec"
	}
	return msg
}

// text returns the scalar of e, named name in messages. A null scalar is
// the empty text; a value that is not a scalar is reported.
func (d *decoder) text(e entry, name string) value {
	if e.key == nil {
		return value{name: name}
	}
	v := value{name: name, line: e.key.Line}
	n := resolve(e.value)
	switch {
	case n == nil || isNull(n):
	case n.Kind != yaml.ScalarNode:
		d.ps.add(v.line, "%s must be text, got %s", name, describe(n))
		v.bad = true
	default:
		v.text = n.Value
	}
	return v
}

// list returns the scalars of the list e and the line of its key.
func (d *decoder) list(e entry, name string) ([]value, int) {
	if e.key == nil {
		return nil, 0
	}
	n := resolve(e.value)
	switch {
	case n == nil || isNull(n):
		return nil, e.key.Line
	case n.Kind != yaml.SequenceNode:
		d.ps.add(e.key.Line, "%s must be a list of URLs, got %s; write it like [https://a.example, https://b.example]", name, describe(n))
		return []value{{name: name, line: e.key.Line, bad: true}}, e.key.Line
	}
	vs := make([]value, 0, len(n.Content))
	for i, item := range n.Content {
		v := d.text(entry{key: item, value: item}, fmt.Sprintf("%s[%d]", name, i))
		vs = append(vs, v)
	}
	return vs, e.key.Line
}

// lineOf returns the line of the first of nodes that is not nil.
func lineOf(nodes ...*yaml.Node) int {
	for _, n := range nodes {
		if n != nil {
			return n.Line
		}
	}
	return 0
}
