// Package probe looks at a SPIFFE bundle endpoint the way a federation
// client would and reports, step by step, what it finds: DNS, TCP, TLS, the
// certificate chain, which profile the endpoint looks like, whether it
// validates as https_web and as https_spiffe, the HTTP answer and the
// bundle, then a verdict with the relationship to create. Each step is a
// finding.Finding whose check is the step's name; the verdict is the worst
// of them.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/profile"
)

// Certificate describes one certificate of the presented chain.
type Certificate struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	DNSNames  []string  `json:"dns_names,omitempty"`
	IPs       []string  `json:"ip_addresses,omitempty"`
	URIs      []string  `json:"uris,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	IsCA      bool      `json:"is_ca"`
}

// Report is everything a probe found.
type Report struct {
	URL         string            `json:"url"`
	Steps       []finding.Finding `json:"steps"`
	Chain       []Certificate     `json:"chain,omitempty"`
	Profile     string            `json:"profile,omitempty"`
	EndpointID  string            `json:"endpoint_spiffe_id,omitempty"`
	TrustDomain string            `json:"trust_domain,omitempty"`
	Verdict     finding.Severity  `json:"verdict"`
	Summary     string            `json:"summary"`
	// Create is the `treaty federation create` line for this endpoint.
	Create string `json:"create_command,omitempty"`
	// Onboarding is the onboarding file for this endpoint.
	Onboarding string `json:"onboarding_yaml,omitempty"`
}

// Config says what to probe and with which trust anchors.
type Config struct {
	URL string
	// Roots for https_web validation; nil means the system roots.
	Roots *x509.CertPool
	// Bundle authenticates an https_spiffe endpoint; nil skips that check
	// unless LookupBundle finds one.
	Bundle *spiffebundle.Bundle
	// LookupBundle, when set, returns the bundle held for a trust domain
	// (from a running server).
	LookupBundle func(ctx context.Context, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error)
	// TrustDomain is the partner's trust domain, if known.
	TrustDomain spiffeid.TrustDomain
	// EndpointID is the SPIFFE ID the endpoint should present, if known.
	EndpointID spiffeid.ID
	// Profile is the profile the relationship uses or will use, if known
	// ("https_web" or "https_spiffe"); a mismatch with what the endpoint
	// presents fails with the advice federation status gives.
	Profile string
	// Insecure reads the bundle even when no profile validates.
	Insecure bool
	Timeout  time.Duration
	Now      func() time.Time
}

// prober carries one probe's state.
type prober struct {
	cfg    Config
	report *Report
	url    *url.URL
	chain  []*x509.Certificate
	tlsOK  bool
}

// add records a step: the check it is, how it went, what it found and
// what to do about it.
// The checks that try the endpoint as each profile are named after it.
const (
	checkWeb    = finding.CheckID(profile.HTTPSWeb)
	checkSPIFFE = finding.CheckID(profile.HTTPSSPIFFE)
)

func (p *prober) add(check finding.CheckID, sev finding.Severity, fix string, format string, args ...any) {
	p.report.Steps = append(p.report.Steps, finding.Finding{Check: check, Severity: sev, Message: fmt.Sprintf(format, args...), Fix: fix})
}

// Run probes cfg.URL. It returns a report whatever happens; Verdict says
// whether a relationship with the endpoint would work.
func Run(ctx context.Context, cfg Config) *Report {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &prober{cfg: cfg, report: &Report{URL: cfg.URL}}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if p.parseURL() && p.resolve(ctx) && p.handshake(ctx) {
		p.describeChain()
		p.detectProfile()
		p.checkWeb()
		p.checkSPIFFE(ctx)
		p.fetch(ctx)
	}
	p.verdict()
	return p.report
}

func (p *prober) parseURL() bool {
	u, err := url.Parse(p.cfg.URL)
	if err != nil || u.Host == "" {
		p.add("url", finding.Fail, "write it like https://bundle.example.com:8443", "%q is not a URL", p.cfg.URL)
		return false
	}
	if u.Scheme != "https" {
		p.add("url", finding.Fail, "use the https:// URL of the endpoint", "scheme %q: the SPIFFE Federation standard requires TLS", u.Scheme)
		return false
	}
	p.url = u
	return true
}

func (p *prober) hostPort() string {
	if p.url.Port() != "" {
		return p.url.Host
	}
	return net.JoinHostPort(p.url.Hostname(), "443")
}

func (p *prober) resolve(ctx context.Context) bool {
	host := p.url.Hostname()
	if net.ParseIP(host) != nil {
		p.add("dns", finding.Skip, "", "%s is an IP address (note: TLS clients send no SNI for IP addresses, so SNI-routing proxies cannot route it)", host)
		return true
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		p.add("dns", finding.Fail, "check the host name, and that this machine's resolver knows it", "cannot resolve %q: %v", host, err)
		return false
	}
	p.add("dns", finding.Pass, "", "%s → %s", host, strings.Join(addrs, ", "))
	return true
}

// handshake connects and completes TLS without verifying anything, so the
// chain can be examined whatever it is.
func (p *prober) handshake(ctx context.Context) bool {
	start := p.cfg.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", p.hostPort())
	if err != nil {
		p.add("tcp", finding.Fail, "check that the endpoint runs and listens on that port, and that no firewall drops the connection", "connect to %s: %v", p.hostPort(), err)
		return false
	}
	p.add("tcp", finding.Pass, "", "connected to %s in %s", raw.RemoteAddr(), p.cfg.Now().Sub(start).Round(time.Millisecond))
	conn := tls.Client(raw, &tls.Config{ServerName: p.url.Hostname(), InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // the chain is verified below, step by step
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		p.add("tls", finding.Fail, "the port may not speak TLS (a plain HTTP port?), or the server refused our TLS versions", "handshake: %v", err)
		return false
	}
	st := conn.ConnectionState()
	p.chain = st.PeerCertificates
	p.add("tls", finding.Pass, "", "%s, ALPN %q, %d certificate(s)", tls.VersionName(st.Version), st.NegotiatedProtocol, len(p.chain))
	p.tlsOK = true
	return len(p.chain) > 0
}

func (p *prober) describeChain() {
	for _, c := range p.chain {
		cert := Certificate{Subject: c.Subject.String(), Issuer: c.Issuer.String(), DNSNames: c.DNSNames,
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, IsCA: c.IsCA}
		for _, ip := range c.IPAddresses {
			cert.IPs = append(cert.IPs, ip.String())
		}
		for _, u := range c.URIs {
			cert.URIs = append(cert.URIs, u.String())
		}
		p.report.Chain = append(p.report.Chain, cert)
	}
	leaf := p.chain[0]
	if now := p.cfg.Now(); now.After(leaf.NotAfter) {
		p.add("validity", finding.Fail, "the partner must renew its endpoint certificate", "the certificate expired %s ago (%s)", now.Sub(leaf.NotAfter).Round(time.Second), leaf.NotAfter.UTC().Format(time.RFC3339))
	} else {
		p.add("validity", finding.Pass, "", "valid until %s (in %s)", leaf.NotAfter.UTC().Format(time.RFC3339), leaf.NotAfter.Sub(now).Round(time.Minute))
	}
}

func (p *prober) detectProfile() {
	id, err := x509svid.IDFromCert(p.chain[0])
	if err == nil {
		p.report.Profile, p.report.EndpointID = string(profile.HTTPSSPIFFE), id.String()
		if p.cfg.TrustDomain.IsZero() {
			p.cfg.TrustDomain = id.TrustDomain()
		}
		if p.cfg.Profile == string(profile.HTTPSWeb) {
			detail, fix := profile.SVIDOnWeb(id)
			p.add("profile", finding.Fail, fix, "%s", detail)
			return
		}
		p.add("profile", finding.Pass, "", "looks like https_spiffe: the certificate is an X509-SVID for %s", id)
		return
	}
	p.report.Profile = string(profile.HTTPSWeb)
	p.add("profile", finding.Pass, "", "looks like https_web: a web certificate for %s (no SPIFFE ID in a URI SAN)", names(p.chain[0]))
}

func names(c *x509.Certificate) string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return "no names"
	}
	return strings.Join(out, ", ")
}

func (p *prober) checkWeb() {
	inter := x509.NewCertPool()
	for _, c := range p.chain[1:] {
		inter.AddCert(c)
	}
	_, err := p.chain[0].Verify(x509.VerifyOptions{DNSName: p.url.Hostname(), Roots: p.cfg.Roots, Intermediates: inter, CurrentTime: p.cfg.Now()})
	if err == nil {
		p.add(checkWeb, finding.Pass, "", "the chain verifies with web PKI for %q", p.url.Hostname())
		return
	}
	if p.report.Profile == string(profile.HTTPSSPIFFE) {
		p.add(checkWeb, finding.Skip, "", "not a web PKI endpoint, as expected of https_spiffe (%v)", err)
		return
	}
	p.add(checkWeb, finding.Fail, webFix(err), "does not validate as https_web: %v (the certificate is valid for %s)", err, names(p.chain[0]))
}

func webFix(err error) string {
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	switch {
	case errors.As(err, &hostErr):
		return "use a URL whose host is a name in the certificate, or ask the partner for a certificate with this name (an ingress answering with its default certificate shows up like this)"
	case errors.As(err, &authErr):
		return "if the partner uses an enterprise or test CA, pass its root with -caFile (and set federation.ca_file on the server)"
	}
	return "ask the partner to fix its endpoint certificate"
}

func (p *prober) checkSPIFFE(ctx context.Context) {
	if p.report.EndpointID == "" {
		status, fix := finding.Skip, ""
		if !p.cfg.EndpointID.IsZero() || p.cfg.Profile == string(profile.HTTPSSPIFFE) {
			// The operator expects an SVID: the classic termination mistake.
			status, fix = finding.Fail, "use -bundleEndpointProfile https_web, or if an ingress terminates TLS in front of the endpoint, switch it to TLS passthrough"
		}
		p.add(checkSPIFFE, status, fix, "the endpoint presents no SPIFFE ID (no URI SAN): it cannot be used with https_spiffe")
		return
	}
	presented := spiffeid.RequireFromString(p.report.EndpointID)
	if !p.cfg.EndpointID.IsZero() && p.cfg.EndpointID != presented {
		p.add("endpoint_id", finding.Fail, "use -endpointSpiffeID "+presented.String()+" if that is the partner's endpoint", "presents %s, expected %s", presented, p.cfg.EndpointID)
	}
	trust := p.trustFor(ctx, presented.TrustDomain())
	if trust == nil {
		p.add(checkSPIFFE, finding.Warn, fmt.Sprintf("pass the partner's bundle with -bundle FILE, or -socketPath to use the one a running server holds for %s", presented.TrustDomain().Name()),
			"no bundle of %s to verify the SVID with; the relationship will need one (bootstrap)", presented.TrustDomain().Name())
		return
	}
	source := x509bundle.FromX509Authorities(trust.TrustDomain(), trust.X509Authorities())
	if _, _, err := x509svid.Verify(p.chain, source); err != nil {
		p.add(checkSPIFFE, finding.Fail, "the bundle is stale (the partner rotated its CA) or for another deployment: get the partner's current bundle (treaty bundle show -format spiffe on their side)", "the SVID does not verify with the bundle we have: %v", err)
		return
	}
	p.add(checkSPIFFE, finding.Pass, "", "the X509-SVID %s verifies with the bundle of %s", presented, trust.TrustDomain().Name())
}

func (p *prober) trustFor(ctx context.Context, td spiffeid.TrustDomain) *spiffebundle.Bundle {
	if p.cfg.Bundle != nil {
		return p.cfg.Bundle
	}
	if p.cfg.LookupBundle == nil {
		return nil
	}
	b, err := p.cfg.LookupBundle(ctx, td)
	if err != nil {
		return nil
	}
	return b
}
