package config

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// decoder turns the node tree of the file into a Config. It walks the tree
// against sections itself, so that it knows the line of every key and can
// record a problem and carry on instead of stopping at the first one.
type decoder struct {
	c   *Config
	src *source
}

// decode returns the Config described by the top-level mapping root of the
// file called file. Its problems are in the returned Config's source.
func decode(root *yaml.Node, file string) *Config {
	d := &decoder{c: &Config{src: newSource(file)}}
	d.src = d.c.src
	d.root(root)
	return d.c
}

func (d *decoder) root(n *yaml.Node) {
	m := d.mapping(n, "")
	d.trustDomain(m["trust_domain"], "trust_domain")
	text(d, m["data_dir"], "data_dir", &d.c.DataDir)
	text(d, m["admin_socket"], "admin_socket", &d.c.AdminSocket)
	text(d, m["workload_socket"], "workload_socket", &d.c.WorkloadSocket)
	text(d, m["audit_log"], "audit_log", &d.c.AuditLog)
	d.logLevel(m["log_level"], "log_level")
	d.ca(m["ca"], "ca")
	d.bundleEndpoint(m["bundle_endpoint"], "bundle_endpoint")
	d.federation(m["federation"], "federation")
	d.telemetry(m["telemetry"], "telemetry")
	d.datastore(m["datastore"], "datastore")
}

func (d *decoder) ca(n *yaml.Node, path string) {
	m := d.mapping(n, path)
	c := &d.c.CA
	text(d, m["key_type"], path+".key_type", &c.KeyType)
	d.duration(m["ca_ttl"], path+".ca_ttl", &c.CATTL)
	d.duration(m["x509_svid_ttl"], path+".x509_svid_ttl", &c.X509SVIDTTL)
	d.duration(m["jwt_svid_ttl"], path+".jwt_svid_ttl", &c.JWTSVIDTTL)
	if m["upstream"] != nil {
		c.Upstream = d.upstream(m["upstream"], path+".upstream")
	}
}

// upstream returns the upstream CA section, or nil when it is not a mapping.
func (d *decoder) upstream(n *yaml.Node, path string) *Upstream {
	m := d.mapping(n, path)
	if m == nil {
		return nil
	}
	u := &Upstream{}
	text(d, m["cert_file"], path+".cert_file", &u.CertFile)
	text(d, m["key_file"], path+".key_file", &u.KeyFile)
	text(d, m["bundle_file"], path+".bundle_file", &u.BundleFile)
	return u
}

func (d *decoder) bundleEndpoint(n *yaml.Node, path string) {
	m := d.mapping(n, path)
	be := &d.c.BundleEndpoint
	text(d, m["address"], path+".address", &be.Address)
	d.duration(m["refresh_hint"], path+".refresh_hint", &be.RefreshHint)
	text(d, m["profile"], path+".profile", &be.Profile)
	d.spiffeID(m["endpoint_spiffe_id"], path+".endpoint_spiffe_id", &be.EndpointSPIFFEID)
	web := d.mapping(m["web"], path+".web")
	text(d, web["cert_file"], path+".web.cert_file", &be.Web.CertFile)
	be.Web.ACME = d.acme(web["acme"], path+".web.acme")
	text(d, web["key_file"], path+".web.key_file", &be.Web.KeyFile)
	d.number(m["rate_limit"], path+".rate_limit", &be.RateLimit)
}

func (d *decoder) federation(n *yaml.Node, path string) {
	m := d.mapping(n, path)
	text(d, m["onboarding_dir"], path+".onboarding_dir", &d.c.Federation.OnboardingDir)
	text(d, m["class_name"], path+".class_name", &d.c.Federation.ClassName)
	d.duration(m["min_refresh"], path+".min_refresh", &d.c.Federation.MinRefresh)
	d.duration(m["max_refresh"], path+".max_refresh", &d.c.Federation.MaxRefresh)
	text(d, m["ca_file"], path+".ca_file", &d.c.Federation.CAFile)
}

func (d *decoder) telemetry(n *yaml.Node, path string) {
	m := d.mapping(n, path)
	text(d, m["address"], path+".address", &d.c.Telemetry.Address)
	d.boolean(m["dashboard"], path+".dashboard", &d.c.Telemetry.Dashboard)
}

func (d *decoder) datastore(n *yaml.Node, path string) {
	m := d.mapping(n, path)
	text(d, m["driver"], path+".driver", &d.c.Datastore.Driver)
	text(d, m["dsn"], path+".dsn", &d.c.Datastore.DSN)
}

// mapping returns the values of the section at path by key. It reports
// unknown and duplicated keys and records the line of every known one. A
// missing section gives a nil map, an empty one (key with no value) an empty
// map, and a value that is not a mapping a nil map and a problem.
func (d *decoder) mapping(n *yaml.Node, path string) map[string]*yaml.Node {
	n = resolve(n)
	switch {
	case n == nil:
		return nil
	case isNull(n):
		return map[string]*yaml.Node{}
	case n.Kind != yaml.MappingNode:
		d.fail(path, "must be a mapping with the keys %s, got %s", strings.Join(sections[path], ", "), describe(n))
		return nil
	}
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		d.entry(n.Content[i], n.Content[i+1], path, m)
	}
	return m
}

// entry adds the pair k: v of the section at path to m, or reports why not.
func (d *decoder) entry(k, v *yaml.Node, path string, m map[string]*yaml.Node) {
	k = resolve(k)
	if k == nil || k.Kind != yaml.ScalarNode {
		d.problem(lineOf(k, v), path, "keys must be plain words, got %s", describe(k))
		return
	}
	p := join(path, k.Value)
	switch {
	case k.Tag == "!!merge":
		d.problem(k.Line, p, "merge keys (<<) are not supported; write the keys out")
	case !slices.Contains(sections[path], k.Value):
		d.problem(k.Line, p, "%s", unknownKey(path, k.Value))
	case m[k.Value] != nil:
		d.problem(k.Line, p, "duplicate key; it is already set on line %d", d.src.lines[p])
	default:
		m[k.Value] = v
		d.src.lines[p] = k.Line
	}
}

// text decodes the scalar n at path into dst. Absent and null values leave
// dst alone.
func text[T ~string](d *decoder, n *yaml.Node, path string, dst *T) {
	sn := d.scalar(n, path, "text")
	switch {
	case sn == nil:
	case sn.Tag == "!!bool":
		d.fail(path, "must be text, got %s; quote it if you mean the word", describe(sn))
	default:
		*dst = T(sn.Value)
	}
}

func (d *decoder) trustDomain(n *yaml.Node, path string) {
	var s string
	if text(d, n, path, &s); s == "" {
		return // Validate reports a missing trust domain
	}
	td, err := parseTrustDomain(s)
	if err != nil {
		d.fail(path, "%v", err)
		return
	}
	d.c.TrustDomain = td
}

// parseTrustDomain parses a trust domain name. Like go-spiffe it accepts the
// SPIFFE ID of the trust domain, spiffe://example.org, but not one with a path.
func parseTrustDomain(s string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return td, fmt.Errorf("%s is not a valid trust domain: %w; "+
			"use lowercase letters, digits, dots, dashes and underscores, e.g. example.org", quote(s), err)
	}
	if id, err := spiffeid.FromString(s); err == nil && id.Path() != "" {
		return td, fmt.Errorf("%s is a SPIFFE ID with a path; write only the trust domain name, %s", quote(s), td)
	}
	return td, nil
}

// logLevels maps the log_level names to levels.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (d *decoder) logLevel(n *yaml.Node, path string) {
	var s string
	if text(d, n, path, &s); s == "" {
		return
	}
	level, ok := logLevels[strings.ToLower(s)]
	if !ok {
		d.fail(path, "%s is not a log level; use debug, info, warn or error", quote(s))
		return
	}
	d.c.LogLevel = level
}

func (d *decoder) duration(n *yaml.Node, path string, dst *time.Duration) {
	sn := d.scalar(n, path, "a duration")
	if sn == nil {
		return
	}
	v, err := parseDuration(sn.Value)
	switch {
	case err != nil:
		d.fail(path, "%s is not a duration; write it like 720h or 30m (or 30d for days)", quote(sn.Value))
	case v <= 0:
		d.fail(path, "%s must be greater than zero", quote(sn.Value))
	default:
		*dst = v
	}
}

func (d *decoder) number(n *yaml.Node, path string, dst *float64) {
	sn := d.scalar(n, path, "a number")
	if sn == nil {
		return
	}
	v, err := strconv.ParseFloat(sn.Value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail(path, "%s is not a number; write it like 50 or 0.5", quote(sn.Value))
		return
	}
	*dst = v
}

func (d *decoder) spiffeID(n *yaml.Node, path string, dst *spiffeid.ID) {
	var s string
	if text(d, n, path, &s); s == "" {
		return
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		d.fail(path, "%s is not a SPIFFE ID: %v; write it like spiffe://example.org/spire/server", quote(s), err)
		return
	}
	*dst = id
}

// scalar returns the scalar node n resolved. It returns nil when n is absent
// or null, and when it is not a scalar, which it reports wanting want.
func (d *decoder) scalar(n *yaml.Node, path, want string) *yaml.Node {
	n = resolve(n)
	switch {
	case n == nil || isNull(n):
		return nil
	case n.Kind != yaml.ScalarNode:
		d.fail(path, "must be %s, got %s", want, describe(n))
		return nil
	}
	return n
}

// fail records a problem with the value at path, so that Validate does not
// report the same value again.
func (d *decoder) fail(path, format string, args ...any) {
	d.src.failed[path] = true
	d.problem(d.src.lineOf(path), path, format, args...)
}

func (d *decoder) problem(line int, path, format string, args ...any) {
	d.src.problems = append(d.src.problems, Problem{Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	const maxAliases = 32 // aliases cannot chain in YAML; this is a backstop
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliases {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
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

// describe names the kind of value n holds, for messages.
func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!bool":
		return "the boolean " + n.Value
	case n.Tag == "!!int" || n.Tag == "!!float":
		return "the number " + n.Value
	}
	return quote(n.Value)
}

func (d *decoder) acme(n *yaml.Node, path string) *ACME {
	m := d.mapping(n, path)
	if m == nil {
		return nil
	}
	a := &ACME{}
	text(d, m["directory_url"], path+".directory_url", &a.DirectoryURL)
	text(d, m["domain_name"], path+".domain_name", &a.DomainName)
	text(d, m["email"], path+".email", &a.Email)
	d.boolean(m["tos_accepted"], path+".tos_accepted", &a.TOSAccepted)
	text(d, m["ca_file"], path+".ca_file", &a.CAFile)
	d.duration(m["renew_before"], path+".renew_before", &a.RenewBefore)
	return a
}

func (d *decoder) boolean(n *yaml.Node, path string, dst *bool) {
	sn := d.scalar(n, path, "true or false")
	if sn == nil {
		return
	}
	switch sn.Value {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		d.fail(path, "%s is not true or false", quote(sn.Value))
	}
}
