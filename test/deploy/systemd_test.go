// Package deploy tests the systemd unit in deploy/systemd: systemd's own
// checker accepts it, its sandbox scores as well exposed as a network
// server can, and the example configuration beside it uses exactly the
// directories the unit gives treaty. (The release build, the image and the
// Helm chart are tested in their own modules, tools/release and
// tools/chart.)
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/treatyhq/treaty/internal/config"
)

const unitFile = "../../deploy/systemd/treaty.service"

// systemdAnalyze returns the path of systemd-analyze, skipping the test
// when it is missing, unless TREATY_E2E=1 (CI), where that fails.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("TREATY_E2E") == "1" {
			t.Fatalf("strict mode (TREATY_E2E=1): systemd-analyze not found: install the Debian package systemd")
		}
		t.Skip("systemd-analyze not found (Debian package systemd)")
	}
	return p
}

// testUnit copies the unit into a temporary directory with ExecStart on an
// executable that exists here: systemd-analyze verify checks that it does.
func testUnit(t *testing.T) string {
	t.Helper()
	body, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "treaty.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(body), "/usr/local/bin/treaty", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	return unit
}

func TestSystemdVerify(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.CommandContext(t.Context(), analyze, "verify", "--man=no", testUnit(t)).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdSandbox wants an exposure of 2.0 or less (systemd calls up to
// 2.0 "OK"; a unit without sandboxing scores 9.6).
func TestSystemdSandbox(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.CommandContext(t.Context(), analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", testUnit(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, lastLines(string(out), 15))
	}
	t.Log(lastLines(string(out), 1))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestSystemdConfigPaths: the example treaty.yaml is valid and keeps
// data_dir in StateDirectory, the sockets in RuntimeDirectory and the
// onboarding files in ConfigurationDirectory, and ExecStart reads it from
// there.
func TestSystemdConfigPaths(t *testing.T) {
	unit := readUnit(t)
	c, err := config.Load("../../deploy/systemd/treaty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	state := "/var/lib/" + unit["StateDirectory"]
	run := "/run/" + unit["RuntimeDirectory"]
	conf := "/etc/" + unit["ConfigurationDirectory"]
	checks := []struct{ what, path, dir string }{
		{"data_dir", c.DataDir, state},
		{"admin_socket", c.AdminSocket, run},
		{"workload_socket", c.WorkloadSocket, run},
		{"federation.onboarding_dir", c.Federation.OnboardingDir, conf},
	}
	for _, ch := range checks {
		if ch.path != ch.dir && !strings.HasPrefix(ch.path, ch.dir+"/") {
			t.Errorf("%s %s is outside %s, which the unit makes writable (or readable) for treaty", ch.what, ch.path, ch.dir)
		}
	}
	if want := "-config " + conf + "/treaty.yaml"; !strings.HasSuffix(unit["ExecStart"], want) {
		t.Errorf("ExecStart %q does not end in %q", unit["ExecStart"], want)
	}
	if unit["User"] == "" || unit["User"] == "root" {
		t.Errorf("the unit runs as %q", unit["User"])
	}
}

// readUnit returns the unit's settings, the last one of each key.
func readUnit(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kv
}
