package config

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// decoder turns the node tree of the file into a Config. It walks the tree
// against schema, so that it knows the line of every key and can record a
// problem and carry on instead of stopping at the first one.
type decoder struct {
	c   *Config
	src *source
	doc *yamldoc.Document
}

// decode returns the Config described by the top-level mapping root of
// doc, the file called file. doc's problems, those of decoding included,
// are in the returned Config's source.
func decode(doc *yamldoc.Document, root *yaml.Node, file string) *Config {
	d := &decoder{c: &Config{src: newSource(file)}, doc: doc}
	d.src = d.c.src
	d.root(root)
	d.src.problems = doc.Problems
	return d.c
}

func (d *decoder) root(n *yaml.Node) {
	m := d.mapping(yamldoc.Entry{Value: n}, "")
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
	d.agentAPI(m["agent_api"], "agent_api")
	d.datastore(m["datastore"], "datastore")
	d.spireServer(m["spire_server"], "spire_server")
}

func (d *decoder) ca(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
	c := &d.c.CA
	text(d, m["key_type"], path+".key_type", &c.KeyType)
	d.duration(m["ca_ttl"], path+".ca_ttl", &c.CATTL)
	d.duration(m["x509_svid_ttl"], path+".x509_svid_ttl", &c.X509SVIDTTL)
	d.duration(m["jwt_svid_ttl"], path+".jwt_svid_ttl", &c.JWTSVIDTTL)
	text(d, m["key_seal_file"], path+".key_seal_file", &c.KeySealFile)
	if m["upstream"].Key != nil {
		c.Upstream = d.upstream(m["upstream"], path+".upstream")
	}
}

// upstream returns the upstream CA section, or nil when it is not a mapping.
func (d *decoder) upstream(e yamldoc.Entry, path string) *Upstream {
	m := d.mapping(e, path)
	if m == nil {
		return nil
	}
	u := &Upstream{}
	text(d, m["cert_file"], path+".cert_file", &u.CertFile)
	text(d, m["key_file"], path+".key_file", &u.KeyFile)
	text(d, m["bundle_file"], path+".bundle_file", &u.BundleFile)
	return u
}

func (d *decoder) bundleEndpoint(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
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
	d.count(m["max_conns_per_client"], path+".max_conns_per_client", &be.MaxConnsPerClient)
	d.count(m["max_conns"], path+".max_conns", &be.MaxConns)
	text(d, m["client_certificate_header"], path+".client_certificate_header", &be.ClientCertificateHeader)
	be.TrustedProxies = d.prefixes(m["trusted_proxies"], path+".trusted_proxies", "trusted_proxies: [127.0.0.1/32]")
}

// prefixes decodes a list of IP addresses and CIDR prefixes; an address
// stands for itself alone (a /32 or /128).
func (d *decoder) prefixes(e yamldoc.Entry, path, example string) []netip.Prefix {
	items, ok := d.doc.List(e, path, example)
	if !ok {
		d.src.failed[path] = true
		return nil
	}
	var out []netip.Prefix
	for i, item := range items {
		var s string
		at := fmt.Sprintf("%s[%d]", path, i)
		d.src.lines[at] = item.Value.Line
		if text(d, item, at, &s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				d.fail(at, "%s is neither an IP address nor a CIDR prefix; e.g. %s", yamldoc.Quote(s), example)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

func (d *decoder) federation(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
	text(d, m["onboarding_dir"], path+".onboarding_dir", &d.c.Federation.OnboardingDir)
	text(d, m["class_name"], path+".class_name", &d.c.Federation.ClassName)
	d.duration(m["min_refresh"], path+".min_refresh", &d.c.Federation.MinRefresh)
	d.duration(m["max_refresh"], path+".max_refresh", &d.c.Federation.MaxRefresh)
	text(d, m["ca_file"], path+".ca_file", &d.c.Federation.CAFile)
	text(d, m["signed_bundles_dir"], path+".signed_bundles_dir", &d.c.Federation.SignedBundlesDir)
	d.pins(m["signed_bundle_pins"], path+".signed_bundle_pins")
}

// pins decodes signed_bundle_pins: trust domain → bundle fingerprint.
func (d *decoder) pins(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
	if len(m) == 0 {
		return
	}
	d.c.Federation.SignedBundlePins = map[spiffeid.TrustDomain]string{}
	for name, pe := range m {
		var fp string
		text(d, pe, path+"."+name, &fp)
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			d.fail(path+"."+name, "%q is not a trust domain: %v", name, err)
			continue
		}
		if !pinPattern.MatchString(fp) {
			d.fail(path+"."+name, "%q is not a bundle fingerprint: want the 64 hex digits of SHA-256 that treaty bundle show -sign and bundle inspect print", fp)
			continue
		}
		d.c.Federation.SignedBundlePins[td] = fp
	}
}

// pinPattern is a bundle fingerprint: hex SHA-256, optionally prefixed
// "sha256:" and with colons between bytes.
var pinPattern = regexp.MustCompile(`^(?i)(sha256:)?([0-9a-f]{2}:?){31}[0-9a-f]{2}$`)

func (d *decoder) telemetry(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
	text(d, m["address"], path+".address", &d.c.Telemetry.Address)
	d.boolean(m["dashboard"], path+".dashboard", &d.c.Telemetry.Dashboard)
}

func (d *decoder) agentAPI(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
	a := &d.c.AgentAPI
	text(d, m["address"], path+".address", &a.Address)
	d.duration(m["agent_svid_ttl"], path+".agent_svid_ttl", &a.AgentSVIDTTL)
	pop := d.mapping(m["x509pop"], path+".x509pop")
	text(d, pop["ca_bundle_path"], path+".x509pop.ca_bundle_path", &a.X509POP.CABundlePath)
	text(d, pop["agent_path_template"], path+".x509pop.agent_path_template", &a.X509POP.AgentPathTemplate)
}

func (d *decoder) spireServer(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
	text(d, m["admin_socket"], path+".admin_socket", &d.c.SPIREServer.AdminSocket)
}

func (d *decoder) datastore(e yamldoc.Entry, path string) {
	m := d.mapping(e, path)
	text(d, m["driver"], path+".driver", &d.c.Datastore.Driver)
	text(d, m["dsn"], path+".dsn", &d.c.Datastore.DSN)
	text(d, m["password_file"], path+".password_file", &d.c.Datastore.PasswordFile)
}

// mapping returns the entries of the section at path (yamldoc.Mapping) and
// records the line of every key. A value that is not a mapping is marked
// failed, so that Validate does not report it again.
func (d *decoder) mapping(e yamldoc.Entry, path string) map[string]yamldoc.Entry {
	m := d.doc.Mapping(e.Value, schema, path, path)
	if m == nil && e.Value != nil {
		d.src.failed[path] = true
	}
	for k, ke := range m {
		d.src.lines[yamldoc.Join(path, k)] = ke.Key.Line
	}
	return m
}

// text decodes the text of e at path into dst (yamldoc.Text).
func text[T ~string](d *decoder, e yamldoc.Entry, path string, dst *T) {
	s, ok := d.doc.Text(e, path)
	if !ok {
		d.src.failed[path] = true
		return
	}
	*dst = T(s)
}

func (d *decoder) trustDomain(e yamldoc.Entry, path string) {
	var s string
	if text(d, e, path, &s); s == "" {
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
			"use lowercase letters, digits, dots, dashes and underscores, e.g. example.org", yamldoc.Quote(s), err)
	}
	if id, err := spiffeid.FromString(s); err == nil && id.Path() != "" {
		return td, fmt.Errorf("%s is a SPIFFE ID with a path; write only the trust domain name, %s", yamldoc.Quote(s), td)
	}
	return td, nil
}

// logLevels maps the log_level names to levels.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (d *decoder) logLevel(e yamldoc.Entry, path string) {
	var s string
	if text(d, e, path, &s); s == "" {
		return
	}
	level, ok := logLevels[strings.ToLower(s)]
	if !ok {
		d.fail(path, "%s is not a log level; use debug, info, warn or error", yamldoc.Quote(s))
		return
	}
	d.c.LogLevel = level
}

func (d *decoder) duration(e yamldoc.Entry, path string, dst *time.Duration) {
	sn := d.scalar(e, path, "a duration")
	if sn == nil {
		return
	}
	v, err := parseDuration(sn.Value)
	switch {
	case err != nil:
		d.fail(path, "%s is not a duration; write it like 720h or 30m (or 30d for days)", yamldoc.Quote(sn.Value))
	case v <= 0:
		d.fail(path, "%s must be greater than zero", yamldoc.Quote(sn.Value))
	default:
		*dst = v
	}
}

func (d *decoder) number(e yamldoc.Entry, path string, dst *float64) {
	sn := d.scalar(e, path, "a number")
	if sn == nil {
		return
	}
	v, err := strconv.ParseFloat(sn.Value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail(path, "%s is not a number; write it like 50 or 0.5", yamldoc.Quote(sn.Value))
		return
	}
	*dst = v
}

// count reads a whole number from 1 to a million: a cap on connections.
func (d *decoder) count(e yamldoc.Entry, path string, dst *int) {
	sn := d.scalar(e, path, "a whole number")
	if sn == nil {
		return
	}
	v, err := strconv.Atoi(sn.Value)
	if err != nil || v < 1 || v > 1_000_000 {
		d.fail(path, "%s is not allowed; write a whole number from 1 to 1000000", yamldoc.Quote(sn.Value))
		return
	}
	*dst = v
}

func (d *decoder) spiffeID(e yamldoc.Entry, path string, dst *spiffeid.ID) {
	var s string
	if text(d, e, path, &s); s == "" {
		return
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		d.fail(path, "%s is not a SPIFFE ID: %v; write it like spiffe://example.org/spire/server", yamldoc.Quote(s), err)
		return
	}
	*dst = id
}

// scalar returns the scalar value of e (yamldoc.Scalar), marking a value
// that is not one failed.
func (d *decoder) scalar(e yamldoc.Entry, path, want string) *yaml.Node {
	n, ok := d.doc.Scalar(e, path, want)
	if !ok {
		d.src.failed[path] = true
	}
	return n
}

// fail records a problem with the value at path, so that Validate does not
// report the same value again.
func (d *decoder) fail(path, format string, args ...any) {
	d.src.failed[path] = true
	d.doc.Add(d.src.lineOf(path), path, format, args...)
}

func (d *decoder) acme(e yamldoc.Entry, path string) *ACME {
	m := d.mapping(e, path)
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

func (d *decoder) boolean(e yamldoc.Entry, path string, dst *bool) {
	if !d.doc.Bool(e, path, dst) {
		d.src.failed[path] = true
	}
}
