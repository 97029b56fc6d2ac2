package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/profile"
)

const maxBody = 1 << 20

// fetch GETs the bundle over a connection whose trust matches what the
// earlier steps established (or, with Insecure, regardless).
func (p *prober) fetch(ctx context.Context) {
	tlsConfig, ok := p.fetchTLS()
	if !ok {
		p.add("http", finding.Skip, "pass -insecure to read the body anyway", "not fetched: no profile validated the endpoint")
		return
	}
	client := &http.Client{Timeout: p.cfg.Timeout, Transport: &http.Transport{TLSClientConfig: tlsConfig},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url.String(), nil)
	if err != nil {
		p.add("http", finding.Fail, "", "build request: %v", err)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		p.add("http", finding.Fail, "check the URL and that nothing in front of the endpoint breaks TLS", "GET: %v", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		p.add("http", finding.Fail, "", "read body: %v", err)
		return
	}
	if p.checkHTTP(resp, body) {
		p.checkBundle(body)
	}
}

func (p *prober) fetchTLS() (*tls.Config, bool) {
	web, spiffe := p.stepStatus(checkWeb), p.stepStatus(checkSPIFFE)
	switch {
	case web == finding.Pass:
		return &tls.Config{RootCAs: p.cfg.Roots, ServerName: p.url.Hostname(), MinVersion: tls.VersionTLS12}, true
	case spiffe == finding.Pass, p.cfg.Insecure:
		// The chain was verified in checkSPIFFE (or -insecure asked for it).
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, true //nolint:gosec // see above
	case spiffe == finding.Warn && p.report.EndpointID != "":
		// No bundle to verify with yet; read the body to show what a
		// bootstrapped relationship would get.
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, true //nolint:gosec // reported as unverified
	}
	return nil, false
}

func (p *prober) stepStatus(check finding.CheckID) finding.Severity {
	for _, s := range p.report.Steps {
		if s.Check == check {
			return s.Severity
		}
	}
	return ""
}

func (p *prober) checkHTTP(resp *http.Response, body []byte) bool {
	ctype, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		p.add("http", finding.Fail, "configure the URL the redirect points to, or remove the redirect", "%s, redirect to %q", resp.Status, resp.Header.Get("Location"))
	case resp.StatusCode != http.StatusOK:
		p.add("http", finding.Fail, "check the URL path (the bundle is usually served at /) and the partner's server", "%s", resp.Status)
	case len(body) > maxBody:
		p.add("http", finding.Fail, "the partner's endpoint serves something else than a bundle", "body larger than %d bytes", maxBody)
	case ctype == "text/html" || strings.HasPrefix(strings.TrimSpace(strings.ToLower(string(body[:min(len(body), 64)]))), "<"):
		p.add("http", finding.Fail, "something in front of the endpoint (a proxy error, a login or captive portal) answers instead of it", "%s, but the body is an HTML page", resp.Status)
	default:
		p.add("http", finding.Pass, "", "%s, %s, %d bytes", resp.Status, ctype, len(body))
		return true
	}
	return false
}

func (p *prober) checkBundle(body []byte) {
	td := p.cfg.TrustDomain
	if td.IsZero() {
		td = inferTrustDomain(body)
	}
	if td.IsZero() {
		p.add("bundle", finding.Warn, "pass -trustDomain with the partner's trust domain", "cannot tell which trust domain the bundle is for: no SPIFFE ID in its authorities")
		return
	}
	p.report.TrustDomain = td.Name()
	res, err := bundle.Parse(td, body, bundle.Options{Now: p.cfg.Now()})
	if err != nil {
		p.add("bundle", finding.Fail, "the partner must fix what its endpoint serves (compare with treaty bundle show -format spiffe)", "%v", err)
		return
	}
	if res.EffectivelyEmpty() {
		p.add("bundle", finding.Fail, `the partner must fix the entries its endpoint serves (treaty bundle validate on the document shows each problem and its fix); to revoke everything on purpose a trust domain publishes "keys": []`,
			"every one of the %d entries of the bundle is ignored, so it is effectively empty (SPIFFE Trust Domain and Bundle §4.1.3): treaty would keep the last good bundle and report the partner as failing", res.Entries)
		for _, w := range res.Warnings {
			p.add("bundle", finding.Warn, "", "%s", w)
		}
		return
	}
	b := res.Bundle
	hint, _ := b.RefreshHint()
	seq, hasSeq := b.SequenceNumber()
	detail := fmt.Sprintf("SPIFFE bundle of %s: %d X.509 and %d JWT authorities, refresh hint %s", td.Name(), len(b.X509Authorities()), len(b.JWTAuthorities()), hint)
	if hasSeq {
		detail += fmt.Sprintf(", sequence %d", seq)
	}
	if first := earliest(b.X509Authorities()); !first.IsZero() {
		detail += ", earliest authority expiry " + first.UTC().Format(time.RFC3339)
	}
	if n := len(res.Ignored); n > 0 {
		detail += fmt.Sprintf("; %d of its %d entries ignored (see the warnings)", n, res.Entries)
	}
	p.add("bundle", finding.Pass, "", "%s", detail)
	for _, w := range res.Warnings {
		p.add("bundle", finding.Warn, "", "%s", w)
	}
}

func earliest(certs []*x509.Certificate) time.Time {
	var first time.Time
	for _, c := range certs {
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first
}

// inferTrustDomain reads the SPIFFE ID of the first X.509 authority that
// has one.
func inferTrustDomain(body []byte) spiffeid.TrustDomain {
	var doc struct {
		Keys []struct {
			X5c []string `json:"x5c"`
		} `json:"keys"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return spiffeid.TrustDomain{}
	}
	for _, k := range doc.Keys {
		for _, c := range k.X5c {
			der, err := base64.StdEncoding.DecodeString(c)
			if err != nil {
				continue
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				continue
			}
			for _, u := range cert.URIs {
				if id, err := spiffeid.FromURI(u); err == nil {
					return id.TrustDomain()
				}
			}
		}
	}
	return spiffeid.TrustDomain{}
}

// verdict sums up and writes the relationship to create.
func (p *prober) verdict() {
	r := p.report
	r.Verdict = finding.Worst(r.Steps)
	switch r.Verdict {
	case finding.Fail:
		r.Summary = "a federation relationship with this endpoint would fail; see the failed steps and their fixes"
	case finding.Warn:
		r.Summary = "the endpoint works, with the warnings above"
	default:
		r.Summary = "the endpoint works as " + r.Profile
	}
	if r.Profile != "" && r.TrustDomain != "" {
		r.Create, r.Onboarding = p.relationship()
	}
}

func (p *prober) relationship() (string, string) {
	r := p.report
	create := fmt.Sprintf("treaty federation create -trustDomain %s -bundleEndpointURL %s -bundleEndpointProfile %s", r.TrustDomain, r.URL, r.Profile)
	yaml := fmt.Sprintf("trustDomain: %s\nbundleEndpointURL: %s\nbundleEndpointProfile:\n  type: %s\n", r.TrustDomain, r.URL, r.Profile)
	if r.Profile == string(profile.HTTPSSPIFFE) {
		create += fmt.Sprintf(" -endpointSpiffeID %s -trustDomainBundlePath %s.json -trustDomainBundleFormat spiffe", r.EndpointID, r.TrustDomain)
		yaml += fmt.Sprintf("  endpointSPIFFEID: %s\ntrustDomainBundle: |-\n  <the partner's bundle: treaty bundle show -format spiffe on their side>\n", r.EndpointID)
	}
	return create, yaml
}
