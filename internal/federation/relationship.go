// Package federation keeps partner trust domains' bundles: relationships
// (which partner, which endpoint, which profile), the fetcher that
// retrieves and authenticates a partner's bundle, and the refresher that
// polls every partner on one scheduler and keeps the last good bundle.
package federation

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/profile"
)

// Relationship is a federation relationship with one partner trust domain.
type Relationship struct {
	TrustDomain spiffeid.TrustDomain
	// BundleEndpointURLs are the partner's bundle endpoints, tried in
	// order: the first is the primary, the others are fallbacks.
	BundleEndpointURLs []*url.URL
	Profile            profile.Name
	// EndpointSPIFFEID is the SPIFFE ID the endpoint must present
	// (https_spiffe only).
	EndpointSPIFFEID spiffeid.ID
	// TrustDomainBundle is an optional bootstrap bundle for TrustDomain.
	TrustDomainBundle *spiffebundle.Bundle
	// ManagedBy is empty for relationships created through the API or CLI,
	// and "onboarding:<file name>" for those reconciled from the
	// onboarding directory.
	ManagedBy string
}

// Validate checks the fields that must agree with each other.
func (r *Relationship) Validate() error {
	if r.TrustDomain.IsZero() {
		return fmt.Errorf("trust domain is required")
	}
	if len(r.BundleEndpointURLs) == 0 {
		return fmt.Errorf("relationship with %q: a bundle endpoint URL is required", r.TrustDomain.Name())
	}
	for _, u := range r.BundleEndpointURLs {
		if err := CheckEndpointURL(u); err != nil {
			return fmt.Errorf("relationship with %q: bundle endpoint URL %w", r.TrustDomain.Name(), err)
		}
	}
	switch r.Profile {
	case profile.HTTPSWeb:
		if !r.EndpointSPIFFEID.IsZero() {
			return fmt.Errorf("relationship with %q: an endpoint SPIFFE ID is only used with profile https_spiffe", r.TrustDomain.Name())
		}
	case profile.HTTPSSPIFFE:
		if r.EndpointSPIFFEID.IsZero() {
			return fmt.Errorf("relationship with %q: profile https_spiffe needs the endpoint SPIFFE ID, e.g. spiffe://%s/spire/server", r.TrustDomain.Name(), r.TrustDomain.Name())
		}
		if err := profile.CheckEndpointSPIFFEID(r.TrustDomain, r.EndpointSPIFFEID); err != nil {
			return fmt.Errorf("relationship with %q: endpoint SPIFFE ID %w", r.TrustDomain.Name(), err)
		}
	default:
		return fmt.Errorf("relationship with %q: unknown profile %q: use https_web or https_spiffe", r.TrustDomain.Name(), r.Profile)
	}
	if r.TrustDomainBundle != nil && r.TrustDomainBundle.TrustDomain() != r.TrustDomain {
		return fmt.Errorf("relationship with %q: the bootstrap bundle is for %q", r.TrustDomain.Name(), r.TrustDomainBundle.TrustDomain().Name())
	}
	return nil
}

// ErrEndpointUserinfo is why a bundle endpoint URL with a user name or
// password is refused, wherever a relationship enters.
var ErrEndpointUserinfo = errors.New("a bundle endpoint URL must not hold a user name or password " +
	"(SPIFFE Federation standard, sections 5.2.1.1 and 5.2.2.1: it MUST NOT include userinfo; bundle endpoints are public and take no credentials): " +
	"remove the \"user:password@\" part, and change that password if it was a real one")

// CheckEndpointURL checks a bundle endpoint URL against the SPIFFE
// Federation standard, sections 5.2.1.1 and 5.2.2.1: the scheme is https
// and the authority has a host and no userinfo. The standard leaves the
// other components (path, query, fragment) unconstrained, so they are
// accepted. Errors start with the URL, quoted and redacted, so that
// callers prefix them with the field they checked.
func CheckEndpointURL(u *url.URL) error {
	switch {
	case u == nil:
		return errors.New("is missing")
	case u.User != nil:
		return fmt.Errorf("%q: %w", RedactURL(u), ErrEndpointUserinfo)
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q must be an https:// URL with a host (the SPIFFE Federation standard requires TLS)", RedactURL(u))
	}
	return nil
}

// RedactURL returns u for display: url.URL.Redacted, which masks a
// password, and a user name given alone is masked too, since it is often
// a token. Relationships stored before userinfo was refused may hold one;
// every place that shows an endpoint URL (status, list, dashboard, logs)
// goes through here. A nil u gives "".
func RedactURL(u *url.URL) string {
	if u == nil || u.User == nil {
		return u.Redacted()
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	c := *u
	c.User = url.User("xxxxx")
	return c.String()
}

// RedactRawURL is RedactURL for a URL held as text. Text that does not
// parse as a URL has anything before an "@" in what looks like its
// authority masked, so that a typo elsewhere does not reveal a password.
func RedactRawURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return RedactURL(u)
	}
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	start := len(raw) - len(rest)
	return raw[:start] + "xxxxx" + raw[start+at:]
}
