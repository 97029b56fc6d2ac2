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
