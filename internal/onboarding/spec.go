package onboarding

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/signedbundle"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

// builder turns a rawSpec into a relationship, recording a problem for
// every value that cannot be used and a warning for what works but is
// worth knowing.
type builder struct {
	ps       *problems
	rel      federation.Relationship
	warnings []string
	// bundleText and bundleLine are trustDomainBundle as written, for
	// Check to look at the bootstrap material more closely.
	bundleText []byte
	bundleLine int
	// signed is trustDomainBundle when it is a signed bundle, and pin
	// trustDomainBundleSHA256 (signed.go).
	signed *signedbundle.Signed
	pin    string
}

func (b *builder) build(s *rawSpec) {
	b.trustDomain(s.trustDomain, s.line)
	b.endpointURLs(s)
	b.profile(s)
	b.endpointSPIFFEID(s)
	b.bundle(s.trustDomainBundle)
	b.pin = s.trustDomainBundleSHA256.text
}

func (b *builder) trustDomain(v value, line int) {
	switch {
	case v.bad:
		return
	case v.text == "":
		b.ps.add(v.lineOr(line), "trustDomain is required, e.g. trustDomain: partner.example")
		return
	}
	td, err := parseTrustDomain(v.text)
	if err != nil {
		b.ps.add(v.line, "trustDomain: %v", err)
		return
	}
	b.rel.TrustDomain = td
}

// parseTrustDomain parses a trust domain name. Like go-spiffe it accepts
// the SPIFFE ID of the trust domain, spiffe://example.org, but not one with
// a path.
func parseTrustDomain(s string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return td, fmt.Errorf("%s is not a valid trust domain: %w; "+
			"use lowercase letters, digits, dots, dashes and underscores, e.g. partner.example", yamldoc.Quote(s), err)
	}
	if id, err := spiffeid.FromString(s); err == nil && id.Path() != "" {
		return td, fmt.Errorf("%s is a SPIFFE ID with a path; write only the trust domain name, %s", yamldoc.Quote(s), td.Name())
	}
	return td, nil
}

// endpointURLs sets the endpoint URLs: bundleEndpointURL first, then
// bundleEndpointURLs in order, each once.
func (b *builder) endpointURLs(s *rawSpec) {
	all := s.bundleEndpointURLs
	if s.bundleEndpointURL.text != "" || s.bundleEndpointURL.bad {
		all = append([]value{s.bundleEndpointURL}, all...)
	}
	if len(all) == 0 {
		line := s.line
		if s.urlsLine > 0 {
			line = s.urlsLine
		}
		b.ps.add(s.bundleEndpointURL.lineOr(line), "bundleEndpointURL is required, e.g. bundleEndpointURL: https://spire.partner.example:8443")
		return
	}
	seen := make(map[string]bool, len(all))
	for _, v := range all {
		if v.bad {
			continue
		}
		u, err := parseEndpointURL(v.text)
		switch {
		case err != nil:
			b.ps.add(v.line, "%s: %v", v.name, err)
		case !seen[u.String()]:
			seen[u.String()] = true
			b.rel.BundleEndpointURLs = append(b.rel.BundleEndpointURLs, u)
		}
	}
}

// parseEndpointURL parses a bundle endpoint URL. The SPIFFE Federation
// standard (sections 5.2.1.1 and 5.2.2.1) requires https and forbids
// userinfo; federation.CheckEndpointURL has the last word, and the URL is
// shown redacted, so a password in the file never reaches a log.
func parseEndpointURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("the URL is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the URL, password and all; its Err is the
		// reason alone.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s is not a URL: %w", yamldoc.Quote(federation.RedactRawURL(s)), err)
	}
	shown := yamldoc.Quote(federation.RedactURL(u))
	switch {
	case u.User != nil:
		return nil, federation.CheckEndpointURL(u)
	case u.Scheme == "http":
		return nil, fmt.Errorf("%s uses http://, but the SPIFFE Federation standard requires TLS: use https://", shown)
	case u.Scheme != "https" || u.Opaque != "":
		return nil, fmt.Errorf("%s is not an https:// URL", shown)
	case u.Hostname() == "":
		return nil, fmt.Errorf("%s has no host; write it like https://spire.partner.example:8443", shown)
	}
	return u, federation.CheckEndpointURL(u)
}

func (b *builder) profile(s *rawSpec) {
	v := s.profileType
	switch {
	case s.profile.bad || v.bad:
		return
	case s.profile.line == 0:
		b.ps.add(s.line, "bundleEndpointProfile is required, e.g. bundleEndpointProfile: {type: https_web}")
		return
	case v.text == "":
		b.ps.add(v.lineOr(s.profile.line), "bundleEndpointProfile.type is required: https_web or https_spiffe")
		return
	}
	p, err := profile.Parse(v.text)
	if err != nil {
		b.ps.add(v.line, "bundleEndpointProfile.type: %v", err)
		return
	}
	b.rel.Profile = p
}

// endpointSPIFFEID sets the SPIFFE ID an https_spiffe endpoint presents,
// in the trust domain the endpoint serves (profile.CheckEndpointSPIFFEID).
func (b *builder) endpointSPIFFEID(s *rawSpec) {
	v := s.endpointSPIFFEID
	switch {
	case v.bad:
		return
	case b.rel.Profile == profile.HTTPSWeb && v.text != "":
		b.ps.add(v.line, "bundleEndpointProfile.endpointSPIFFEID is only used with type https_spiffe; "+
			"remove it, or set type: https_spiffe if the endpoint presents an X509-SVID")
		return
	case b.rel.Profile != profile.HTTPSSPIFFE:
		return
	case v.text == "":
		b.ps.add(v.lineOr(s.profile.line), "bundleEndpointProfile.endpointSPIFFEID is required with type https_spiffe, e.g. endpointSPIFFEID: spiffe://%s/spire/server", b.tdName())
		return
	}
	id, err := spiffeid.FromString(v.text)
	if err != nil {
		b.ps.add(v.line, "bundleEndpointProfile.endpointSPIFFEID %s is not a SPIFFE ID: %v; write it like spiffe://%s/spire/server", yamldoc.Quote(v.text), err, b.tdName())
		return
	}
	if !b.rel.TrustDomain.IsZero() {
		if err := profile.CheckEndpointSPIFFEID(b.rel.TrustDomain, id); err != nil {
			b.ps.add(v.line, "bundleEndpointProfile.endpointSPIFFEID %v", err)
			return
		}
	}
	b.rel.EndpointSPIFFEID = id
}

// bundleWarningPrefix starts the warnings about trustDomainBundle.
const bundleWarningPrefix = "trustDomainBundle: "

// bundle sets the bootstrap bundle from trustDomainBundle, a SPIFFE bundle
// (JWK Set) as text.
func (b *builder) bundle(v value) {
	td := b.rel.TrustDomain
	switch {
	case v.bad || td.IsZero():
		return // without a trust domain the bundle cannot be checked
	case strings.TrimSpace(v.text) == "":
		if b.rel.Profile == profile.HTTPSSPIFFE {
			b.warnings = append(b.warnings, fmt.Sprintf("the relationship cannot authenticate the endpoint until a bundle for %s is stored (treaty bundle set)", td.Name()))
		}
		return
	case signedbundle.IsSigned([]byte(v.text)):
		b.signedBundle(v)
		return
	}
	res, err := bundle.Parse(td, []byte(v.text), bundle.Options{RequireKeys: true})
	if err != nil {
		b.bundleProblems(v.line, err)
		return
	}
	for _, w := range res.Warnings {
		b.warnings = append(b.warnings, bundleWarningPrefix+w)
	}
	b.rel.TrustDomainBundle = res.Bundle
	b.bundleText, b.bundleLine = []byte(v.text), v.line
}

func (b *builder) bundleProblems(line int, err error) {
	be, ok := errors.AsType[*bundle.Error](err)
	if !ok {
		b.ps.add(line, "trustDomainBundle: %v", err)
		return
	}
	for _, p := range be.Problems {
		b.ps.add(line, "trustDomainBundle: %s", p)
	}
}

// tdName names the trust domain in examples, or a placeholder.
func (b *builder) tdName() string {
	if b.rel.TrustDomain.IsZero() {
		return "<trustDomain>"
	}
	return b.rel.TrustDomain.Name()
}
