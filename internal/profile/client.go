package profile

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// FederationClientPath is the path of the SPIFFE ID under which treaty's
// federation client presents an X509-SVID of its own trust domain when a
// partner's bundle endpoint asks for a client certificate. The endpoint
// never requires one (SPIFFE Federation standard, section 5: bundle
// endpoint clients may be anonymous); a treaty endpoint that is shown one
// records which partner fetched which bundle (a receipt).
const FederationClientPath = "/treaty/federation-client"

// FederationClientID is the SPIFFE ID of td's federation client.
func FederationClientID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := spiffeid.FromPath(td, FederationClientPath) // a constant, valid path
	return id
}
