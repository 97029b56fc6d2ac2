// Package federation keeps partner trust domains' bundles: relationships
// (which partner, which endpoint, which profile), the fetcher that
// retrieves and authenticates a partner's bundle, and the refresher that
// polls every partner on one scheduler and keeps the last good bundle.
package federation

import (
	"fmt"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Profile is a bundle endpoint profile (SPIFFE Federation standard).
type Profile string

// The two profiles.
const (
	// ProfileHTTPSWeb authenticates the endpoint with web PKI.
	ProfileHTTPSWeb Profile = "https_web"
	// ProfileHTTPSSPIFFE authenticates the endpoint's X509-SVID with a
	// bundle of the endpoint SPIFFE ID's trust domain.
	ProfileHTTPSSPIFFE Profile = "https_spiffe"
)

// ParseProfile returns the profile named s.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case ProfileHTTPSWeb, ProfileHTTPSSPIFFE:
		return p, nil
	}
	return "", fmt.Errorf("unknown bundle endpoint profile %q: use https_web or https_spiffe", s)
}

// Relationship is a federation relationship with one partner trust domain.
type Relationship struct {
	TrustDomain spiffeid.TrustDomain
	// BundleEndpointURLs are the partner's bundle endpoints, tried in
	// order: the first is the primary, the others are fallbacks.
	BundleEndpointURLs []*url.URL
	Profile            Profile
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
		if u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("relationship with %q: bundle endpoint URL %q must be an https:// URL with a host (the SPIFFE Federation standard requires TLS)", r.TrustDomain.Name(), u)
		}
	}
	switch r.Profile {
	case ProfileHTTPSWeb:
		if !r.EndpointSPIFFEID.IsZero() {
			return fmt.Errorf("relationship with %q: an endpoint SPIFFE ID is only used with profile https_spiffe", r.TrustDomain.Name())
		}
	case ProfileHTTPSSPIFFE:
		if r.EndpointSPIFFEID.IsZero() {
			return fmt.Errorf("relationship with %q: profile https_spiffe needs the endpoint SPIFFE ID, e.g. spiffe://%s/spire/server", r.TrustDomain.Name(), r.TrustDomain.Name())
		}
	default:
		return fmt.Errorf("relationship with %q: unknown profile %q: use https_web or https_spiffe", r.TrustDomain.Name(), r.Profile)
	}
	if r.TrustDomainBundle != nil && r.TrustDomainBundle.TrustDomain() != r.TrustDomain {
		return fmt.Errorf("relationship with %q: the bootstrap bundle is for %q", r.TrustDomain.Name(), r.TrustDomainBundle.TrustDomain().Name())
	}
	return nil
}
