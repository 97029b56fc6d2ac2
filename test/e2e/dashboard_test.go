package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// chromium returns Debian's chromium, or skips (fails under TREATY_E2E=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if strict {
		t.Fatal("chromium not found: install Debian's chromium package")
	}
	t.Skip("chromium not found")
	return ""
}

// browse loads url in headless Chromium and returns the rendered DOM.
func browse(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}, args...)...)
	out, err := cmd.Output()
	require.NoError(t, err, "chromium %v", args)
	return string(out)
}

// TestDashboardInBrowser loads the dashboard in a real browser, checks the
// rendered partner rows, kills the partner and checks the page shows it,
// and saves a screenshot.
func TestDashboardInBrowser(t *testing.T) {
	bin := chromium(t)
	alpha, beta := federatedPair(t)
	_ = beta
	telemetry := freePort(t)
	alpha.stop()
	conf, err := os.ReadFile(alpha.config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(alpha.config, append(conf, []byte("telemetry:\n  address: "+telemetry+"\n  dashboard: true\n")...), 0o600))
	alpha.start()
	url := "http://" + telemetry + "/dashboard"

	waitFor(t, func() bool {
		return strings.Contains(browse(t, bin, "--dump-dom", url), `data-trust-domain="beta.test" data-state="healthy"`)
	}, "the dashboard shows beta.test healthy")
	dom := browse(t, bin, "--dump-dom", url)
	require.Contains(t, dom, `<span id="trust-domain">alpha.test</span>`)
	require.Contains(t, dom, `class="authority" data-kind="x509" data-state="active"`)
	require.Contains(t, dom, `class="node" data-trust-domain="beta.test"`)

	beta.kill()
	waitFor(t, func() bool {
		dom = browse(t, bin, "--dump-dom", url)
		return strings.Contains(dom, `data-trust-domain="beta.test" data-state="failing"`) || strings.Contains(dom, `data-trust-domain="beta.test" data-state="stale"`)
	}, "the dashboard shows beta.test failing")
	require.Contains(t, dom, `class="partner-error" data-trust-domain="beta.test"`)

	shot := filepath.Join(os.TempDir(), "treaty-dashboard.png")
	browse(t, bin, "--window-size=1280,1000", "--screenshot="+shot, url)
	info, err := os.Stat(shot)
	require.NoError(t, err)
	require.Positive(t, info.Size())
	t.Logf("screenshot: %s", shot)
}
