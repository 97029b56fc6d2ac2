package cli

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/testpki"
)

// TestDoctorFindsPlantedProblems plants one problem per check and reads
// what treaty doctor says about each.
func TestDoctorFindsPlantedProblems(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "treaty-doctor") //nolint:usetesting // unix socket paths must stay short
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	dataDir := t.TempDir()
	require.NoError(t, os.Chmod(dataDir, 0o700)) // t.TempDir is 0755, which doctor rightly flags
	socket := startWith(t, config.Overrides{TrustDomain: "alpha.test", DataDir: dataDir,
		AdminSocket: filepath.Join(sockDir, "admin.sock"), WorkloadSocket: filepath.Join(sockDir, "wl.sock")}, nil)

	statuses := func() (map[string]string, int) {
		out, _, code := run(t, "", "doctor", "-socketPath", socket, "-output", "json")
		var resp struct {
			Checks []struct{ Check, Severity string } `json:"checks"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &resp), out)
		m := map[string]string{}
		for _, c := range resp.Checks {
			m[c.Check] = c.Severity
		}
		return m, code
	}
	clean, code := statuses()
	require.Zero(t, code, "%v", clean)
	for _, name := range []string{"ca", "rotation", "relationships", "partner-expiry", "federation-gaps", "permissions", "datastore"} {
		require.Equal(t, "pass", clean[name], name)
	}
	require.Equal(t, "warn", clean["bundle-endpoint"], "no endpoint configured")

	// Planted: a readable key, a dead partner, an entry without a bundle,
	// a device CA about to expire.
	keys, err := filepath.Glob(filepath.Join(dataDir, "keys", "*"))
	require.NoError(t, err)
	require.NoError(t, os.Chmod(keys[0], 0o644))
	_, stderr, code := run(t, "", "federation", "create", "-socketPath", socket, "-trustDomain", "dead.test",
		"-bundleEndpointURL", "https://127.0.0.1:9/", "-bundleEndpointProfile", "https_web")
	require.Zero(t, code, stderr)
	_, stderr, code = run(t, "", "entry", "create", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/x", "-selector", "unix:uid:1", "-federatesWith", "nowhere.test")
	require.Zero(t, code, stderr)
	ca := testpki.CACertValid(t, "spiffe://devices.test", time.Now().AddDate(-1, 0, 0), time.Now().Add(48*time.Hour))
	file := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600))
	_, stderr, code = run(t, "", "bundle", "set", "-socketPath", socket, "-format", "pem", "-id", "spiffe://devices.test", "-path", file)
	require.Zero(t, code, stderr)

	var planted map[string]string
	require.Eventually(t, func() bool {
		planted, code = statuses()
		return planted["relationships"] != "pass"
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, 1, code, "a failed check fails the command")
	require.Equal(t, "fail", planted["permissions"])
	require.Equal(t, "warn", planted["relationships"])
	require.Equal(t, "warn", planted["federation-gaps"])
	require.Equal(t, "warn", planted["partner-expiry"])
	require.Equal(t, "pass", planted["ca"])

	out, _, _ := run(t, "", "doctor", "-socketPath", socket)
	require.Contains(t, out, "fix: chmod 700 the data directory and 600 the keys")
	require.Contains(t, out, "(docs/doctor.md#permissions)")
}
