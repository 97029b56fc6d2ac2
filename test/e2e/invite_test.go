package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var tokenRe = regexp.MustCompile(`treaty-invite-1\.\S+`)

// TestInviteJoin federates two servers with one invite and one join each
// way, alpha over https_spiffe (trust on first use pinned to the invite's
// fingerprint) and beta over https_web, then checks the refusals: a used
// invite, a damaged one, and one made before a CA rotation.
func TestInviteJoin(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	alphaAddr, betaAddr := freePort(t), freePort(t)
	alpha := newServer(t, "alpha.test", "bundle_endpoint:\n  address: "+alphaAddr+"\n  profile: https_spiffe\n  refresh_hint: 2s\nca:\n  ca_ttl: 24h\n"+
		"federation:\n  min_refresh: 1s\n  ca_file: "+certFile+"\n")
	beta := newServer(t, "beta.test", "bundle_endpoint:\n  address: "+betaAddr+"\n  profile: https_web\n  refresh_hint: 2s\n  web:\n    cert_file: "+certFile+"\n    key_file: "+keyFile+"\nca:\n  ca_ttl: 24h\nfederation:\n  min_refresh: 1s\n")
	alpha.start()
	beta.start()

	out, stderr, err := alpha.treatyErr("federation", "invite", "-reverse")
	require.NoError(t, err, stderr)
	invite := tokenRe.FindString(out)
	require.NotEmpty(t, invite)
	require.Contains(t, stderr, "treaty federation join")
	require.NotContains(t, stderr, "warning:", "how to use an invite is guidance, not a warning")

	// Beta joins alpha's invite and answers with its own.
	out = beta.treaty("federation", "join", invite)
	require.Contains(t, out, "Joined alpha.test")
	reverse := tokenRe.FindString(out)
	require.NotEmpty(t, reverse, "the invite asked for a reverse invite:\n%s", out)
	out = alpha.treaty("federation", "join", reverse)
	require.Contains(t, out, "Joined beta.test")

	healthy := func(st relationshipStatus) bool { return st.State == "healthy" }
	waitStatus(t, beta, "alpha.test", healthy)
	waitStatus(t, alpha, "beta.test", healthy)

	t.Run("fail/used twice", func(t *testing.T) {
		beta.treaty("federation", "delete", "-id", "alpha.test")
		_, stderr, err := beta.treatyErr("federation", "join", invite)
		require.Error(t, err)
		require.Equal(t, 1, strings.Count(stderr, "already used"), stderr)
		require.NotContains(t, beta.treaty("federation", "list"), "alpha.test", "nothing was created")
	})
	t.Run("fail/damaged", func(t *testing.T) {
		fresh := tokenRe.FindString(alpha.treaty("federation", "invite"))
		i := len(fresh) / 2
		damaged := fresh[:i] + flip(fresh[i]) + fresh[i+1:]
		_, stderr, err := beta.treatyErr("federation", "join", damaged)
		require.Error(t, err)
		require.Contains(t, stderr, "the invite is damaged")
	})
	t.Run("fail/made before a rotation", func(t *testing.T) {
		stale := tokenRe.FindString(alpha.treaty("federation", "invite"))
		alpha.treaty("localauthority", "x509", "prepare")
		_, stderr, err := beta.treatyErr("federation", "join", stale)
		require.Error(t, err)
		require.Contains(t, stderr, "changed since the invite was made")
		require.NotContains(t, beta.treaty("federation", "list"), "alpha.test", "nothing was created")
	})
	t.Run("ok/a new invite after the rotation", func(t *testing.T) {
		fresh := tokenRe.FindString(alpha.treaty("federation", "invite", "-embedBundle"))
		require.Contains(t, beta.treaty("federation", "join", fresh), "Joined alpha.test")
		waitStatus(t, beta, "alpha.test", healthy)
	})
}

func flip(c byte) string {
	if strings.ContainsRune("abc", rune(c)) {
		return "x"
	}
	return "a"
}
