package cli

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/testpki"
)

// TestOnboardingCheckProbe probes the endpoints of onboarding files: a
// real local https_web endpoint passes, a dead one fails the check.
func TestOnboardingCheckProbe(t *testing.T) {
	b := spiffebundle.New(spiffeid.RequireTrustDomainFromString("web.example"))
	b.AddX509Authority(testpki.CACert(t, "spiffe://web.example"))
	doc, err := bundle.Marshal(b)
	require.NoError(t, err)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	write := func(name, url string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte("trustDomain: web.example\nbundleEndpointURL: "+url+"\nbundleEndpointProfile:\n  type: https_web\n"), 0o600))
		return path
	}

	out, stderr, code := run(t, "", "onboarding", "check", "-probe", "-caFile", caFile, write("live.yaml", srv.URL))
	require.Zero(t, code, "%s\n%s", out, stderr)
	require.Contains(t, out, "probe    "+filepath.Join(dir, "live.yaml")+"  "+srv.URL+": pass: the endpoint works as https_web\n")
	require.Contains(t, out, "\n1 file(s), no errors; 1 endpoint(s) probed, none failing\n")

	// Two dead URLs: each is named, with its failed step's cause and fix,
	// and the outcome is summed up once.
	srv.Close()
	other := "https://127.0.0.1:1"
	path := filepath.Join(dir, "two.yaml")
	require.NoError(t, os.WriteFile(path, []byte("trustDomain: web.example\nbundleEndpointURLs: ["+srv.URL+", "+other+"]\nbundleEndpointProfile:\n  type: https_web\n"), 0o600))
	out, stderr, code = run(t, "", "onboarding", "check", "-probe", "-caFile", caFile, path)
	require.Equal(t, 1, code)
	for _, u := range []string{srv.URL, other} {
		require.Contains(t, out, "probe    "+path+"  "+u+": fail:")
	}
	require.Regexp(t, `(?m)^\s+FAIL tcp\s+.*connection refused`, out, "the failed step's cause")
	require.Regexp(t, `(?m)^\s+fix: .+`, out, "and its fix")
	require.NotContains(t, out, "error(s)", "the summary is given once, on stderr")
	require.Equal(t, "error: 1 file(s), no errors; 2 endpoint(s) probed, 2 failing\n", stderr)
}
