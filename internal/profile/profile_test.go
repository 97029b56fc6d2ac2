package profile

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Name
		err  string
	}{
		{"https_web", HTTPSWeb, ""},
		{"https_spiffe", HTTPSSPIFFE, ""},
		{"HTTPS_WEB", "", `unknown bundle endpoint profile "HTTPS_WEB": use https_web or https_spiffe`},
		{"", "", "use https_web or https_spiffe"},
	}
	for _, tc := range cases {
		name := "ok/" + tc.in
		if tc.err != "" {
			name = "fail/" + tc.in
		}
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestSVIDOnWeb(t *testing.T) {
	detail, fix := SVIDOnWeb(spiffeid.RequireFromString("spiffe://beta.test/spire/server"))
	require.Equal(t, "this endpoint presents an X509-SVID for spiffe://beta.test/spire/server, not a web certificate for its host: it is an https_spiffe endpoint", detail)
	require.Contains(t, fix, "use bundleEndpointProfile https_spiffe with endpointSpiffeID spiffe://beta.test/spire/server")
	require.Contains(t, fix, "treaty federation update -trustDomain beta.test -bundleEndpointProfile https_spiffe -endpointSpiffeID spiffe://beta.test/spire/server")
}

func TestCheckEndpointSPIFFEID(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("beta.test")
	require.NoError(t, CheckEndpointSPIFFEID(td, spiffeid.RequireFromString("spiffe://beta.test/spire/server")))
	err := CheckEndpointSPIFFEID(td, spiffeid.RequireFromString("spiffe://gamma.test/spire/server"))
	require.EqualError(t, err, "spiffe://gamma.test/spire/server is not in trust domain beta.test; "+
		"treaty requires the bundle endpoint to belong to the trust domain it serves, e.g. spiffe://beta.test/spire/server")
}
