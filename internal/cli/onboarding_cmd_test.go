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
	require.Contains(t, out, "probe    "+filepath.Join(dir, "live.yaml")+": pass:")

	srv.Close()
	out, _, code = run(t, "", "onboarding", "check", "-probe", "-caFile", caFile, write("live.yaml", srv.URL))
	require.Equal(t, 1, code)
	require.Contains(t, out, ": fail:")
}
