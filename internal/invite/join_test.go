package invite

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/federation"
)

// refuseFetch is a Fetcher that fails the test if anything is fetched.
type refuseFetch struct{ t *testing.T }

func (f refuseFetch) Fetch(context.Context, federation.Relationship, *url.URL, *spiffebundle.Bundle) (*bundle.Result, error) {
	f.t.Error("fetched a bundle for an invite that must be refused first")
	return nil, context.Canceled
}

func TestVerifyRefusesBadURLBeforeFetching(t *testing.T) {
	for _, tc := range []struct {
		name, url, phrase string
		userinfo          bool
	}{
		{name: "fail/user and password", url: "https://admin:s3cr3t@alpha.example:8443", phrase: `"https://admin:xxxxx@alpha.example:8443"`, userinfo: true},
		{name: "fail/user name alone", url: "https://s3cr3t@alpha.example:8443", phrase: `"https://xxxxx@alpha.example:8443"`, userinfo: true},
		{name: "fail/plain http", url: "http://alpha.example", phrase: "must be an https:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := Token{TrustDomain: "alpha.test", URLs: []string{tc.url}, Profile: "https_web", Fingerprint: strings.Repeat("ab", 32), Nonce: "n1"}
			_, err := Verify(t.Context(), tok, refuseFetch{t})
			require.ErrorContains(t, err, tc.phrase)
			require.ErrorContains(t, err, "ask alpha.test for a new invite")
			require.Equal(t, tc.userinfo, errors.Is(err, federation.ErrEndpointUserinfo))
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}
