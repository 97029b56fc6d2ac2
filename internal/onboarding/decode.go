package onboarding

import (
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// The resource type spire-controller-manager reads; an onboarding file
// holds one of these or just its spec.
const (
	APIVersion = "spire.spiffe.io/v1alpha1"
	Kind       = "ClusterFederatedTrustDomain"
)

// specKeys are the keys of a ClusterFederatedTrustDomain spec, plus
// treaty's bundleEndpointURLs.
var specKeys = []string{
	"className", "trustDomain", "bundleEndpointURL", "bundleEndpointURLs",
	"bundleEndpointProfile", "trustDomainBundle", "trustDomainBundleSHA256",
}

// The two shapes of an onboarding file: a whole resource, or its spec at
// the top level.
var (
	profileSection = yamldoc.Section{
		Keys:    []string{"type", "endpointSPIFFEID"},
		Example: "bundleEndpointProfile: {type: https_web}",
	}
	resourceSchema = yamldoc.Schema{
		"": {Keys: []string{"apiVersion", "kind", "metadata", "spec", "status"}},
		// Any key: labels, annotations, namespace and the rest of
		// Kubernetes object metadata are of no concern here.
		"metadata": {Example: "metadata: {name: partner-example}"},
		"spec": {
			Keys:    specKeys,
			Example: "spec: {trustDomain: partner.example, bundleEndpointURL: https://spire.partner.example, bundleEndpointProfile: {type: https_web}}",
		},
		"spec.bundleEndpointProfile": profileSection,
	}
	bareSchema = yamldoc.Schema{
		"":                      {Keys: specKeys},
		"bundleEndpointProfile": profileSection,
	}
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
	// trustDomainBundleSHA256 pins a signed trustDomainBundle's
	// fingerprint while no bundle is held (docs/offline-federation.md).
	trustDomainBundleSHA256 value
}

// decoder walks the node tree of one file. It knows the line of every key
// and records a problem and carries on instead of stopping at the first.
type decoder struct {
	ps     *problems
	schema yamldoc.Schema
	spec   string // the section of the spec: "spec", or "" in a bare spec
}

// file decodes the top-level mapping root: a whole resource when it has
// any of the resource's keys, else a bare spec. It returns the name in the
// metadata, if any, and the spec, or nil when there is none to check.
func (d *decoder) file(root *yaml.Node) (name string, spec *rawSpec) {
	isResource := slices.ContainsFunc(resourceSchema[""].Keys, func(key string) bool { return lookup(root, key) != nil })
	if !isResource {
		d.schema = bareSchema
		return "", d.specOf(yamldoc.Entry{Value: root}, root.Line)
	}
	d.schema, d.spec = resourceSchema, "spec"
	if k := yamldoc.Resolve(lookup(root, "kind")); k != nil && k.Kind == yaml.ScalarNode && !yamldoc.IsNull(k) && k.Value != Kind {
		// Another kind's keys would only add noise to this problem.
		d.ps.add(k.Line, "kind %s is not %s; an onboarding directory holds only %s resources", yamldoc.Quote(k.Value), Kind, Kind)
		return "", nil
	}
	return d.resource(d.ps.Mapping(root, d.schema, "", ""), root.Line)
}

// resource decodes the entries m of a ClusterFederatedTrustDomain that
// starts on line.
func (d *decoder) resource(m map[string]yamldoc.Entry, line int) (name string, spec *rawSpec) {
	d.text(m["kind"], "kind") // only reports a kind that is not text
	if v := d.text(m["apiVersion"], "apiVersion"); v.text != "" && v.text != APIVersion {
		d.ps.add(v.line, "apiVersion %s is not %s", yamldoc.Quote(v.text), APIVersion)
	}
	name = d.metadata(m["metadata"])
	e, ok := m["spec"]
	if !ok {
		d.ps.add(line, "spec is required: a %s needs spec.trustDomain, spec.bundleEndpointURL and spec.bundleEndpointProfile", Kind)
		return name, nil
	}
	return name, d.specOf(e, e.Key.Line)
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
func (d *decoder) metadata(e yamldoc.Entry) string {
	if e.Key == nil {
		return ""
	}
	m := d.ps.Mapping(e.Value, d.schema, "metadata", "metadata")
	return d.text(m["name"], "metadata.name").text
}

// specOf decodes the spec e, which starts on line.
func (d *decoder) specOf(e yamldoc.Entry, line int) *rawSpec {
	m := d.ps.Mapping(e.Value, d.schema, d.spec, d.spec)
	if m == nil {
		return nil
	}
	s := &rawSpec{line: line}
	s.className = d.text(m["className"], "className")
	s.trustDomain = d.text(m["trustDomain"], "trustDomain")
	s.bundleEndpointURL = d.text(m["bundleEndpointURL"], "bundleEndpointURL")
	s.bundleEndpointURLs, s.urlsLine = d.list(m["bundleEndpointURLs"], "bundleEndpointURLs")
	s.trustDomainBundle = d.text(m["trustDomainBundle"], "trustDomainBundle")
	s.trustDomainBundleSHA256 = d.text(m["trustDomainBundleSHA256"], "trustDomainBundleSHA256")
	d.profile(m["bundleEndpointProfile"], s)
	d.misspelt(d.spec, "trustDomain", &s.trustDomain)
	d.misspelt(d.spec, "bundleEndpointURL", &s.bundleEndpointURL)
	d.misspelt(d.spec, "bundleEndpointProfile", &s.profile)
	return s
}

// misspelt marks v, absent from section sec as key, as already reported
// when an unknown key there was taken to misspell it: the "did you mean"
// says all there is to say, so no "is required" follows it.
func (d *decoder) misspelt(sec, key string, v *value) {
	if v.line == 0 && d.ps.Misspelt(sec, key) {
		v.bad = true
	}
}

func (d *decoder) profile(e yamldoc.Entry, s *rawSpec) {
	if e.Key == nil {
		return
	}
	s.profile = value{name: "bundleEndpointProfile", line: e.Key.Line}
	sec := yamldoc.Join(d.spec, "bundleEndpointProfile")
	m := d.ps.Mapping(e.Value, d.schema, sec, sec)
	if m == nil {
		s.profile.bad = true
		return
	}
	s.profileType = d.text(m["type"], "bundleEndpointProfile.type")
	s.endpointSPIFFEID = d.text(m["endpointSPIFFEID"], "bundleEndpointProfile.endpointSPIFFEID")
	d.misspelt(sec, "type", &s.profileType)
	d.misspelt(sec, "endpointSPIFFEID", &s.endpointSPIFFEID)
}

// text returns the text of e, named name in messages (yamldoc.Text). A
// null scalar is the empty text.
func (d *decoder) text(e yamldoc.Entry, name string) value {
	if e.Key == nil {
		return value{name: name}
	}
	s, ok := d.ps.Text(e, name)
	return value{name: name, text: s, line: e.Key.Line, bad: !ok}
}

// list returns the texts of the list e and the line of its key.
func (d *decoder) list(e yamldoc.Entry, name string) ([]value, int) {
	if e.Key == nil {
		return nil, 0
	}
	n := yamldoc.Resolve(e.Value)
	switch {
	case n == nil || yamldoc.IsNull(n):
		return nil, e.Key.Line
	case n.Kind != yaml.SequenceNode:
		d.ps.Add(e.Key.Line, name, "%s must be a list of URLs, got %s; write it like [https://a.example, https://b.example]", name, yamldoc.Describe(n))
		return []value{{name: name, line: e.Key.Line, bad: true}}, e.Key.Line
	}
	vs := make([]value, 0, len(n.Content))
	for i, item := range n.Content {
		vs = append(vs, d.text(yamldoc.Entry{Key: item, Value: item}, fmt.Sprintf("%s[%d]", name, i)))
	}
	return vs, e.Key.Line
}
