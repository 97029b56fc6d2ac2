package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

const (
	minRefreshHint = time.Second
	maxRefreshHint = 7 * day
	// maxSocketPath is the longest unix socket path every platform takes:
	// sun_path holds 104 bytes on macOS and 108 on Linux, with a final NUL.
	maxSocketPath = 103
	// rotationFactor bounds ca_ttl from below in refresh hints; see
	// validator.rotation.
	rotationFactor = 9
)

// Validate checks c as it is, defaults included (call ApplyDefaults first).
// It returns a *yamldoc.Error listing every problem, including those found in
// the file c was parsed from, or nil.
func (c *Config) Validate() error {
	v := &validator{c: c, src: c.src}
	if v.src == nil {
		v.src = newSource("")
	}
	v.required()
	v.sockets()
	v.ca()
	v.bundleEndpoint()
	v.federation()
	v.telemetry()
	v.agentAPI()
	v.datastore()
	v.spireServer()
	v.logLevel()
	return v.err()
}

// validator collects the problems of one Config.
type validator struct {
	c        *Config
	src      *source
	problems []yamldoc.Problem
}

// add records a problem with the value at path unless the file already had
// one there.
func (v *validator) add(path, format string, args ...any) {
	v.addAt(v.src.lineOf(path), path, format, args...)
}

func (v *validator) addAt(line int, path, format string, args ...any) {
	if v.src.failed[path] {
		return
	}
	v.problems = append(v.problems, yamldoc.Problem{Line: line, Field: path, Message: fmt.Sprintf(format, args...)})
}

// usable reports whether the file had no problem with any of paths, so that
// their values can be compared.
func (v *validator) usable(paths ...string) bool {
	return !slices.ContainsFunc(paths, func(p string) bool { return v.src.failed[p] })
}

// err returns the problems of the file and of the values, ordered by line.
func (v *validator) err() error {
	all := append(slices.Clone(v.src.problems), v.problems...)
	if len(all) == 0 {
		return nil
	}
	yamldoc.SortByLine(all)
	return &yamldoc.Error{Source: cmp.Or(v.src.file, "configuration"), Problems: all}
}

// required checks the values that have no default.
func (v *validator) required() {
	if v.c.TrustDomain.IsZero() {
		v.add("trust_domain", "trust_domain is required; set it to the name of your trust domain, "+
			"e.g. trust_domain: example.org, or pass -trustDomain")
	}
	if v.c.DataDir == "" {
		v.add("data_dir", "data_dir is required")
	}
}

func (v *validator) sockets() {
	v.socket("admin_socket", v.c.AdminSocket, "/tmp/treaty/admin.sock")
	v.socket("workload_socket", v.c.WorkloadSocket, "/tmp/treaty/workload.sock")
	admin, workload := v.c.AdminSocket, v.c.WorkloadSocket
	if admin != "" && filepath.Clean(admin) == filepath.Clean(workload) && v.usable("admin_socket") {
		v.add("workload_socket", "%s is also admin_socket; workloads must not reach the admin API, "+
			"so give them different paths", yamldoc.Quote(workload))
	}
}

// socket checks the unix socket path s set at path.
func (v *validator) socket(path, s, example string) {
	switch {
	case s == "":
		v.add(path, "%s is required", path)
	case len(s) > maxSocketPath:
		v.add(path, "%s is %d bytes long; unix socket paths must be shorter than %d bytes, "+
			"so choose a shorter one such as %s", yamldoc.Quote(s), len(s), maxSocketPath+1, example)
	}
}

func (v *validator) ca() {
	c := v.c.CA
	if _, err := ca.ParseKeyType(string(c.KeyType)); err != nil {
		v.add("ca.key_type", "%v", err)
	}
	v.positive("ca.ca_ttl", c.CATTL, DefaultCATTL)
	v.positive("ca.x509_svid_ttl", c.X509SVIDTTL, DefaultX509SVIDTTL)
	v.positive("ca.jwt_svid_ttl", c.JWTSVIDTTL, DefaultJWTSVIDTTL)
	v.svidTTL("ca.x509_svid_ttl", c.X509SVIDTTL)
	v.svidTTL("ca.jwt_svid_ttl", c.JWTSVIDTTL)
	v.rotation()
	v.upstream()
}

// positive checks that the duration d set at path is greater than zero.
func (v *validator) positive(path string, d, example time.Duration) {
	if d <= 0 {
		v.add(path, "%s must be greater than zero, like %s", formatDuration(d), formatDuration(example))
	}
}

// svidTTL checks that the SVID lifetime d set at path is within the CA's.
func (v *validator) svidTTL(path string, d time.Duration) {
	caTTL := v.c.CA.CATTL
	if d <= 0 || d < caTTL || !v.usable("ca.ca_ttl") {
		return
	}
	value := formatDuration(d)
	if _, set := v.src.lines[path]; !set && v.src.file != "" {
		value += " (the default)"
	}
	v.addAt(v.src.lineOf(path, "ca.ca_ttl"), path, "%s must be shorter than ca.ca_ttl (%s): "+
		"an SVID cannot outlive the CA that signs it", value, formatDuration(caTTL))
}

// rotation checks that the CA lives long enough for the next authority to
// reach federated trust domains in time. The next authority is published at
// half the CA lifetime and activated at five sixths of it, so it sits in the
// bundle for a third of ca_ttl before use; SPIFFE Federation, section 4.1,
// recommends publishing new keys 3 to 5 refresh hints in advance. A third of
// ca_ttl must hence cover 3 refresh hints: ca_ttl >= 9 × refresh_hint. The
// CA rotates by the refresh hint whether or not the bundle endpoint is on,
// since partners may fetch the bundle through other means.
func (v *validator) rotation() {
	caTTL, hint := v.c.CA.CATTL, v.c.BundleEndpoint.RefreshHint
	const caPath, hintPath = "ca.ca_ttl", "bundle_endpoint.refresh_hint"
	if caTTL <= 0 || hint < minRefreshHint || hint > maxRefreshHint ||
		caTTL >= rotationFactor*hint || !v.usable(caPath, hintPath) {
		return
	}
	fix := "set ca_ttl to " + formatDuration(rotationFactor*hint) + " or more"
	if most := (caTTL / rotationFactor).Truncate(time.Second); most >= minRefreshHint {
		fix += ", or refresh_hint to " + formatDuration(most) + " or less"
	}
	v.addAt(v.src.lineOf(caPath, hintPath), caPath, "%s is too short for bundle_endpoint.refresh_hint %s: "+
		"the next CA is published at half the CA lifetime and activated at five sixths of it, and "+
		"SPIFFE Federation (section 4.1) wants it in the bundle 3 to 5 refresh hints before use, "+
		"so ca_ttl must be at least 9 × refresh_hint; %s",
		formatDuration(caTTL), formatDuration(hint), fix)
}

func (v *validator) upstream() {
	u := v.c.CA.Upstream
	if u == nil {
		return
	}
	if u.CertFile == "" {
		v.add("ca.upstream.cert_file", "ca.upstream.cert_file is required when ca.upstream is set")
	}
	if u.KeyFile == "" {
		v.add("ca.upstream.key_file", "ca.upstream.key_file is required when ca.upstream is set")
	}
}

func (v *validator) bundleEndpoint() {
	be := v.c.BundleEndpoint
	if be.Address != "" {
		v.hostPort("bundle_endpoint.address", be.Address, "127.0.0.1:8443")
	}
	v.refreshHint(be.RefreshHint)
	v.profile(be)
	v.endpointID()
	if !(be.RateLimit >= 0) || math.IsInf(be.RateLimit, 0) {
		v.add("bundle_endpoint.rate_limit", "%v is not allowed; write requests per second per client IP, "+
			"or 0 to turn rate limiting off", be.RateLimit)
	}
	v.forwardedClientCertificate(be)
}

// forwardedClientCertificate checks that a client certificate header comes
// with the proxies allowed to set it, and the other way round.
func (v *validator) forwardedClientCertificate(be BundleEndpoint) {
	const header, proxies = "bundle_endpoint.client_certificate_header", "bundle_endpoint.trusted_proxies"
	switch {
	case be.ClientCertificateHeader != "" && !headerName.MatchString(be.ClientCertificateHeader):
		v.add(header, "%s is not an HTTP header name; e.g. X-SPIFFE-Client-Cert", yamldoc.Quote(be.ClientCertificateHeader))
	case be.ClientCertificateHeader != "" && len(be.TrustedProxies) == 0 && v.usable(proxies):
		v.add(header, "%s needs %s, the addresses of the proxies that set it: from any other client the header "+
			"would let anyone claim a partner's fetch; e.g. trusted_proxies: [127.0.0.1/32]", header, proxies)
	case be.ClientCertificateHeader == "" && len(be.TrustedProxies) > 0:
		v.add(proxies, "%s is only used with %s; set the header your proxy passes the client certificate in "+
			"(e.g. X-SPIFFE-Client-Cert, from NGINX's $ssl_client_escaped_cert), or remove it", proxies, header)
	}
	for _, p := range be.TrustedProxies {
		if p.Bits() == 0 {
			v.add(proxies, "%s trusts every address, so any client could claim a partner's fetch; list your proxies' addresses", p)
		}
	}
}

// headerName matches an HTTP field name (RFC 9110 token characters).
var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func (v *validator) refreshHint(d time.Duration) {
	const path = "bundle_endpoint.refresh_hint"
	switch {
	case d < minRefreshHint:
		v.add(path, "%s is too short; use %s or more (%s is usual)",
			formatDuration(d), formatDuration(minRefreshHint), formatDuration(DefaultRefreshHint))
	case d > maxRefreshHint:
		v.add(path, "%s is too long: federated trust domains would see new keys late; use %s or less (%s is usual)",
			formatDuration(d), formatDuration(maxRefreshHint), formatDuration(DefaultRefreshHint))
	}
}

// profile checks the endpoint profile against the files of the web section.
func (v *validator) profile(be BundleEndpoint) {
	switch be.Profile {
	case profile.HTTPSWeb:
		if be.Web.ACME != nil {
			v.acme(be.Web)
		} else if be.Address != "" {
			v.webFile("bundle_endpoint.web.cert_file", be.Web.CertFile)
			v.webFile("bundle_endpoint.web.key_file", be.Web.KeyFile)
		}
	case profile.HTTPSSPIFFE:
		v.unusedWebFile("bundle_endpoint.web.cert_file", be.Web.CertFile)
		v.unusedWebFile("bundle_endpoint.web.key_file", be.Web.KeyFile)
		if be.Web.ACME != nil {
			v.add("bundle_endpoint.web.acme", "ACME certificates are only used by profile https_web; https_spiffe serves an X509-SVID from treaty's CA")
		}
	default:
		v.add("bundle_endpoint.profile", "%s is not a bundle endpoint profile; use %s or %s",
			yamldoc.Quote(string(be.Profile)), profile.HTTPSSPIFFE, profile.HTTPSWeb)
	}
}

func (v *validator) webFile(path, file string) {
	if file == "" && v.usable("bundle_endpoint.web") {
		v.addAt(v.src.lineOf(path, "bundle_endpoint.profile"), path,
			"%s is required by profile https_web, which serves a Web PKI certificate", path)
	}
}

func (v *validator) unusedWebFile(path, file string) {
	if file != "" {
		v.add(path, "%s is only used by profile https_web; remove it, or set bundle_endpoint.profile: https_web", path)
	}
}

func (v *validator) endpointID() {
	const path = "bundle_endpoint.endpoint_spiffe_id"
	id, td := v.c.BundleEndpoint.EndpointSPIFFEID, v.c.TrustDomain
	switch {
	case td.IsZero():
		// Reported as a missing trust domain.
	case id.IsZero():
		v.add(path, "%s is required; the default is spiffe://%s%s", path, td, DefaultEndpointPath)
	case !id.MemberOf(td):
		v.add(path, "%s is not in trust domain %s; use an ID in it such as spiffe://%s%s",
			id, td, td, DefaultEndpointPath)
	}
}

func (v *validator) telemetry() {
	addr := v.c.Telemetry.Address
	if addr == "" {
		return
	}
	v.hostPort("telemetry.address", addr, "127.0.0.1:9988")
	if addr == v.c.BundleEndpoint.Address && v.usable("bundle_endpoint.address") {
		v.add("telemetry.address", "%s is also bundle_endpoint.address; give them different ports", yamldoc.Quote(addr))
	}
}

func (v *validator) agentAPI() {
	a := v.c.AgentAPI
	v.positive("agent_api.agent_svid_ttl", a.AgentSVIDTTL, DefaultAgentSVIDTTL)
	v.svidTTL("agent_api.agent_svid_ttl", a.AgentSVIDTTL)
	if a.Address == "" {
		if a.X509POP.CABundlePath != "" {
			v.add("agent_api.x509pop.ca_bundle_path", "x509pop is only used by the agent API; set agent_api.address too, e.g. 0.0.0.0:8081")
		}
		return
	}
	v.hostPort("agent_api.address", a.Address, "0.0.0.0:8081")
	others := []struct{ path, addr string }{
		{"bundle_endpoint.address", v.c.BundleEndpoint.Address},
		{"telemetry.address", v.c.Telemetry.Address},
	}
	for _, o := range others {
		if o.addr == a.Address && v.usable(o.path) {
			v.add("agent_api.address", "%s is also %s; give them different ports", yamldoc.Quote(o.addr), o.path)
		}
	}
}

// hostPort checks that addr, set at path, is a host:port to listen on.
func (v *validator) hostPort(path, addr, example string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			err = errors.New(ae.Err)
		}
		v.add(path, "%s is not host:port (%v); write it like %s", yamldoc.Quote(addr), err, example)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.add(path, "%s has port %s; the port must be a number from 0 to 65535, e.g. %s",
			yamldoc.Quote(addr), yamldoc.Quote(port), example)
	}
}

func (v *validator) datastore() {
	ds := v.c.Datastore
	switch ds.Driver {
	case DriverSQLite:
		for key, set := range map[string]bool{"dsn": ds.DSN != "", "password_file": ds.PasswordFile != ""} {
			if set {
				v.add("datastore."+key, "datastore.%s is only used by driver postgres; "+
					"sqlite keeps its database in data_dir, so remove %s", key, key)
			}
		}
		if v.c.CA.KeySealFile != "" {
			v.add("ca.key_seal_file", "ca.key_seal_file is only used with datastore driver postgres, where replicas share the keys "+
				"in the database; sqlite keeps them in data_dir/keys, so remove key_seal_file")
		}
	case DriverPostgres:
		if ds.DSN == "" {
			v.addAt(v.src.lineOf("datastore.dsn", "datastore.driver"), "datastore.dsn", "datastore.dsn is required by driver postgres, "+
				"e.g. postgres://treaty@db.internal:5432/treaty (the password in datastore.password_file)")
		}
	default:
		v.add("datastore.driver", "%s is not a datastore driver; use sqlite (one server, the default) or postgres (several replicas)", yamldoc.Quote(ds.Driver))
	}
}

// spireServer refuses what gateway mode cannot do: treaty runs no CA of
// its own there, so nothing that needs one (agents, a CA's settings) and
// no replicas yet.
func (v *validator) spireServer() {
	if v.c.SPIREServer.AdminSocket == "" {
		return
	}
	const why = "with spire_server.admin_socket treaty is the federation layer of that SPIRE server and runs no CA of its own"
	for path, set := range map[string]bool{
		"agent_api.address": v.c.AgentAPI.Address != "",
		"ca.upstream":       v.c.CA.Upstream != nil,
		"ca.key_seal_file":  v.c.CA.KeySealFile != "",
	} {
		if set {
			v.add(path, "%s: %s; spire-agents attach to the SPIRE server, and its CA is configured there, so remove %s", path, why, path)
		}
	}
	for _, key := range []string{"key_type", "ca_ttl", "x509_svid_ttl", "jwt_svid_ttl"} {
		if _, set := v.src.lines["ca."+key]; set {
			v.add("ca."+key, "ca.%s: %s; the SPIRE server's own configuration decides it, so remove ca.%s", key, why, key)
		}
	}
	if v.c.Datastore.Driver == DriverPostgres {
		v.add("datastore.driver", "several replicas in front of one SPIRE server are not supported yet; use driver sqlite with spire_server")
	}
	if id := v.c.BundleEndpoint.EndpointSPIFFEID; strings.HasPrefix(id.Path(), "/spire/") && v.c.BundleEndpoint.Profile == profile.HTTPSSPIFFE {
		v.add("bundle_endpoint.endpoint_spiffe_id", "%s is in SPIRE's reserved namespace (/spire/), and the SPIRE server mints the endpoint's SVID in front of it: "+
			"use a workload ID such as spiffe://%s%s (the default), and give partners that ID", id, v.c.TrustDomain.Name(), GatewayEndpointPath)
	}
}

func (v *validator) logLevel() {
	switch v.c.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		v.add("log_level", "%v is not a log level; use debug, info, warn or error", v.c.LogLevel)
	}
}

// federation checks the refresh clamp.
func (v *validator) federation() {
	f := v.c.Federation
	if f.MinRefresh > 0 && f.MaxRefresh > 0 && f.MinRefresh > f.MaxRefresh {
		v.add("federation.min_refresh", "%s is longer than max_refresh %s", formatDuration(f.MinRefresh), formatDuration(f.MaxRefresh))
	}
}

// acme checks the ACME settings of the https_web profile.
func (v *validator) acme(web Web) {
	a, p := web.ACME, "bundle_endpoint.web.acme"
	if web.CertFile != "" || web.KeyFile != "" {
		v.add(p, "use either acme or cert_file/key_file, not both")
	}
	if u, err := url.Parse(a.DirectoryURL); a.DirectoryURL == "" || err != nil || u.Scheme != "https" {
		v.add(p+".directory_url", "an https:// ACME directory URL is required, e.g. https://acme-v02.api.letsencrypt.org/directory")
	}
	if a.DomainName == "" || strings.ContainsAny(a.DomainName, "/:* ") || net.ParseIP(a.DomainName) != nil {
		v.add(p+".domain_name", "a DNS name is required (ACME certificates name hosts, not IP addresses), e.g. bundle.example.com")
	}
	if !a.TOSAccepted {
		v.add(p+".tos_accepted", "must be true: read the ACME CA's terms of service and accept them explicitly")
	}
}
