package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSignedBundleDirectory federates statically through a directory of
// signed bundles, as a partner without a reachable bundle endpoint would
// publish them in a repository: beta pins alpha's first bundle in its
// configuration, then follows alpha through two rotations of its JWT
// authority, each ending with the key beta started from gone, with no step
// on beta's side. Tampered, replayed and rolled-back files are refused, and
// beta's log and federation status say why.
func TestSignedBundleDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	alpha := newServer(t, "alpha.test", "")
	alpha.start()
	repo := t.TempDir()
	publish := func(name string) string {
		t.Helper()
		file := alpha.treaty("bundle", "show", "-format", "spiffe", "-sign")
		writeAtomic(t, filepath.Join(repo, name), file)
		return file
	}
	var first struct {
		Fingerprint string `json:"fingerprint"`
	}
	require.NoError(t, json.Unmarshal([]byte(alpha.treaty("bundle", "show", "-format", "spiffe", "-sign", "-output", "json")), &first))
	firstFile := publish("alpha.json")

	beta := newServer(t, "beta.test", fmt.Sprintf("federation:\n  signed_bundles_dir: %s\n  signed_bundle_pins:\n    alpha.test: %s\n", repo, first.Fingerprint))
	beta.start()
	caughtUp := func(step string) {
		t.Helper()
		want := alpha.treaty("bundle", "show", "-format", "spiffe")
		waitFor(t, func() bool {
			out, _, err := beta.treatyErr("bundle", "show", "-id", "spiffe://alpha.test", "-format", "spiffe")
			return err == nil && out == want
		}, step+": beta does not hold alpha's bundle:\n"+beta.log.String())
	}
	caughtUp("pinned first file")
	original := jwtAuthority(t, alpha, "Active")

	var history []string
	for i := range 2 {
		old := jwtAuthority(t, alpha, "Active")
		alpha.treaty("localauthority", "jwt", "prepare")
		history = append(history, publish("alpha.json"))
		caughtUp(fmt.Sprintf("rotation %d: prepared", i+1))
		next := jwtAuthority(t, alpha, "Prepared")
		alpha.treaty("localauthority", "jwt", "activate", "-authorityID", next)
		alpha.treaty("localauthority", "jwt", "taint", "-authorityID", old)
		alpha.treaty("localauthority", "jwt", "revoke", "-authorityID", old)
		history = append(history, publish("alpha.json"))
		caughtUp(fmt.Sprintf("rotation %d: old key revoked", i+1))
	}
	held := beta.treaty("bundle", "show", "-id", "spiffe://alpha.test", "-format", "spiffe")
	require.NotContains(t, held, `"kid": "`+original+`"`, "the key beta started from is gone from alpha's bundle")
	current := history[len(history)-1]

	for _, tc := range []struct {
		name, file, content, reason string
	}{
		{"tampered", "alpha.json", strings.Replace(current, `"spiffe_refresh_hint":`, `"spiffe_refresh_hint":1`, 1), "not signed by a JWT authority of the bundle held"},
		{"replayed", "alpha-copy.json", history[1], "a replayed or rolled-back file"},
		{"rolled back", "alpha.json", firstFile, "a replayed or rolled-back file"},
	} {
		writeAtomic(t, filepath.Join(repo, tc.file), tc.content)
		waitFor(t, func() bool {
			return regexp.MustCompile(`signed bundle refused.*file=` + regexp.QuoteMeta(tc.file) + `.*` + regexp.QuoteMeta(tc.reason)).MatchString(beta.log.String())
		}, tc.name+": no refusal in beta's log:\n"+beta.log.String())
		require.Equal(t, held, beta.treaty("bundle", "show", "-id", "spiffe://alpha.test", "-format", "spiffe"), tc.name+": the bundle held is unchanged")
		status := beta.treaty("federation", "status")
		require.Contains(t, status, "  "+tc.file+": refused (alpha.test sequence", tc.name+": federation status names the file")
		require.Contains(t, status, tc.reason, tc.name+": federation status says why")
		require.NoError(t, os.Remove(filepath.Join(repo, tc.file)))
		writeAtomic(t, filepath.Join(repo, "alpha.json"), current)
	}
}

// jwtAuthority returns the ID of alpha's JWT authority in slot (Active,
// Prepared or Old), as localauthority jwt show prints it.
func jwtAuthority(t *testing.T, s *server, slot string) string {
	t.Helper()
	out := s.treaty("localauthority", "jwt", "show")
	m := regexp.MustCompile(`(?s)` + slot + ` JWT authority:\n  Authority ID: (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "no %s JWT authority in:\n%s", slot, out)
	return m[1]
}

// writeAtomic replaces path with content as a checkout would: a new file
// renamed over the old one.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}
