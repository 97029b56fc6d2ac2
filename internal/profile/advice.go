package profile

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// SVIDOnWeb says what an https_web relationship's endpoint is when it
// presents the X509-SVID id instead of a web certificate for its host, and
// what to do: the mirror of a web certificate on https_spiffe. The
// federation fetcher (and so federation status and doctor) and probe use
// these same words.
func SVIDOnWeb(id spiffeid.ID) (detail, fix string) {
	return fmt.Sprintf("this endpoint presents an X509-SVID for %s, not a web certificate for its host: it is an %s endpoint", id, HTTPSSPIFFE),
		fmt.Sprintf("use bundleEndpointProfile %s with endpointSpiffeID %s, bootstrapped with the partner's bundle (treaty federation update -trustDomain %s -bundleEndpointProfile %s -endpointSpiffeID %s -trustDomainBundlePath FILE, where FILE is treaty bundle show -format spiffe on their side)",
			HTTPSSPIFFE, id, id.TrustDomain().Name(), HTTPSSPIFFE, id)
}

// CheckEndpointSPIFFEID refuses an https_spiffe endpoint SPIFFE ID outside
// the trust domain td the endpoint serves. SPIRE allows one (an endpoint
// run by a third party); treaty does not, so that a partner's bundle is
// only ever authenticated by the partner itself. The error starts with
// the ID, so that callers prefix it with the field or flag they checked;
// the API, the CLI and onboarding files all give these words.
func CheckEndpointSPIFFEID(td spiffeid.TrustDomain, id spiffeid.ID) error {
	if id.TrustDomain() == td {
		return nil
	}
	return fmt.Errorf("%s is not in trust domain %s; treaty requires the bundle endpoint to belong to the trust domain it serves, e.g. spiffe://%s/spire/server",
		id, td.Name(), td.Name())
}
