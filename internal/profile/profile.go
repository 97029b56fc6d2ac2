// Package profile names the SPIFFE bundle endpoint profiles: how a bundle
// endpoint authenticates itself to those who fetch from it (SPIFFE
// Federation standard, section 5.2). The names are the wire spelling of
// SPIRE's configuration and API, the ClusterFederatedTrustDomain resource
// and invites; everything in treaty that configures, serves, fetches with,
// checks, plans or prints a profile uses these.
package profile

import "fmt"

// Name is a bundle endpoint profile.
type Name string

// The two profiles. A bundle endpoint client must support both, a server
// at least one (SPIFFE Federation standard, section 5).
const (
	// HTTPSWeb authenticates the endpoint with web PKI: a certificate
	// for its host name from a CA the client trusts (section 5.2.1).
	HTTPSWeb Name = "https_web"
	// HTTPSSPIFFE authenticates the endpoint's X509-SVID, which must
	// carry the endpoint SPIFFE ID, with a bundle of that ID's trust
	// domain (section 5.2.2).
	HTTPSSPIFFE Name = "https_spiffe"
)

// Parse returns the profile named s.
func Parse(s string) (Name, error) {
	switch p := Name(s); p {
	case HTTPSWeb, HTTPSSPIFFE:
		return p, nil
	}
	return "", fmt.Errorf("unknown bundle endpoint profile %q: use %s or %s", s, HTTPSWeb, HTTPSSPIFFE)
}
