package federation

import (
	"errors"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckEndpointURL(t *testing.T) {
	cases := []struct {
		name, url string
		userinfo  bool
		phrase    string
	}{
		{name: "ok/host and path", url: "https://spire.partner.example:8443/bundle"},
		{name: "ok/query and fragment (not constrained by the standard)", url: "https://partner.example/b?td=x#y"},
		{name: "fail/user and password", url: "https://user:pw@partner.example/", userinfo: true, phrase: `"https://user:xxxxx@partner.example/": a bundle endpoint URL must not hold a user name or password`},
		{name: "fail/user alone", url: "https://token@partner.example/", userinfo: true, phrase: `"https://xxxxx@partner.example/"`},
		{name: "fail/empty password", url: "https://user:@partner.example/", userinfo: true, phrase: "user:xxxxx@"},
		{name: "fail/plain http with password", url: "http://user:pw@partner.example/", userinfo: true, phrase: "must not hold"},
		{name: "fail/plain http", url: "http://partner.example/", phrase: "must be an https:// URL"},
		{name: "fail/no host", url: "https:///bundle", phrase: "with a host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			require.NoError(t, err)
			err = CheckEndpointURL(u)
			if tc.phrase == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.phrase)
			require.Equal(t, tc.userinfo, errors.Is(err, ErrEndpointUserinfo))
			require.NotContains(t, err.Error(), "pw")
			require.NotContains(t, err.Error(), "token")
		})
	}
}

func TestRedactURL(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{name: "ok/no userinfo unchanged", in: "https://partner.example/b?q=1", want: "https://partner.example/b?q=1"},
		{name: "ok/password masked", in: "https://user:pw@partner.example/", want: "https://user:xxxxx@partner.example/"},
		{name: "ok/user alone masked", in: "https://token@partner.example/", want: "https://xxxxx@partner.example/"},
		{name: "ok/unparsable userinfo masked", in: "https://user:p%w@host/x@y", want: "https://xxxxx@host/x@y"},
		{name: "ok/unparsable without userinfo unchanged", in: "https://host%zz/", want: "https://host%zz/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, RedactRawURL(tc.in))
		})
	}
	require.Empty(t, RedactURL(nil))
}

func TestValidateRefusesUserinfo(t *testing.T) {
	rel := webRelationship()
	rel.BundleEndpointURLs = []*url.URL{mustURL(t, "https://partner.example/"), mustURL(t, "https://u:secret@fallback.example/")}
	err := rel.Validate()
	require.ErrorIs(t, err, ErrEndpointUserinfo)
	require.NotContains(t, err.Error(), "secret")
}
