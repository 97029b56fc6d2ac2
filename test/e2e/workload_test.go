package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/testpki"
)

var uidSelector = "unix:uid:" + strconv.Itoa(os.Getuid())

// TestWorkloadAPIClients fetches SVIDs and bundles from a treaty server
// with go-spiffe, the real spire-agent CLI and treaty's own client, for an
// entry that federates with a partner that is down and has never been
// reached: the SVID must be served regardless.
func TestWorkloadAPIClients(t *testing.T) {
	agent := spireAgent(t)
	alpha := newServer(t, "alpha.test", "")
	alpha.start()
	// A partner whose endpoint is dead and whose bundle we never had.
	alpha.treaty("federation", "create", "-trustDomain", "down.test", "-bundleEndpointURL", "https://127.0.0.1:"+closedPort(t),
		"-bundleEndpointProfile", "https_web")
	// A device fleet's CA imported as a static bundle.
	devicesPEM := filepath.Join(t.TempDir(), "devices.pem")
	writeCACert(t, devicesPEM, "spiffe://devices.test")
	alpha.treaty("bundle", "set", "-format", "pem", "-id", "spiffe://devices.test", "-path", devicesPEM)

	out, stderr, err := alpha.treatyErr("entry", "create", "-spiffeID", "spiffe://alpha.test/svc/e2e", "-selector", uidSelector,
		"-federatesWith", "down.test", "-federatesWith", "devices.test", "-hint", "e2e")
	require.NoError(t, err, "creating an entry for a partner without a bundle succeeds\n%s\n%s", out, stderr)
	require.Contains(t, stderr, "down.test", "the missing bundle is reported")

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addr := workloadapi.WithAddr("unix://" + alpha.workload)

	t.Run("ok/go-spiffe", func(t *testing.T) {
		var x509ctx *workloadapi.X509Context
		waitFor(t, func() bool {
			var err error
			x509ctx, err = workloadapi.FetchX509Context(ctx, addr)
			if err != nil {
				return false
			}
			_, ok := x509ctx.Bundles.Get(spiffeid.RequireTrustDomainFromString("devices.test"))
			return ok
		}, "X509 context with the devices.test bundle")
		require.Len(t, x509ctx.SVIDs, 1)
		svid := x509ctx.SVIDs[0]
		require.Equal(t, "spiffe://alpha.test/svc/e2e", svid.ID.String())
		require.Equal(t, "e2e", svid.Hint)
		local, ok := x509ctx.Bundles.Get(spiffeid.RequireTrustDomainFromString("alpha.test"))
		require.True(t, ok)
		_, _, err := x509svid.Verify(svid.Certificates, x509bundle.NewSet(local))
		require.NoError(t, err)
		_, ok = x509ctx.Bundles.Get(spiffeid.RequireTrustDomainFromString("down.test"))
		require.False(t, ok)

		jwt, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "partner"}, addr)
		require.NoError(t, err)
		validated, err := workloadapi.ValidateJWTSVID(ctx, jwt.Marshal(), "partner", addr)
		require.NoError(t, err)
		require.Equal(t, svid.ID, validated.ID)
	})

	t.Run("ok/spire-agent api fetch", func(t *testing.T) {
		dir := t.TempDir()
		out, stderr, err := runCmd(agent, "api", "fetch", "x509", "-socketPath", alpha.workload, "-write", dir)
		require.NoError(t, err, "%s\n%s", out, stderr)
		require.Contains(t, out, "spiffe://alpha.test/svc/e2e")
		certs, err := os.ReadFile(filepath.Join(dir, "svid.0.pem"))
		require.NoError(t, err)
		require.Contains(t, string(certs), "BEGIN CERTIFICATE")
		require.FileExists(t, filepath.Join(dir, "federated_bundle.0.0.pem"))

		out, stderr, err = runCmd(agent, "api", "fetch", "jwt", "-audience", "partner", "-socketPath", alpha.workload)
		require.NoError(t, err, "%s\n%s", out, stderr)
		token := tokenFromAgentOutput(t, out)
		out, stderr, err = runCmd(agent, "api", "validate", "jwt", "-audience", "partner", "-svid", token, "-socketPath", alpha.workload)
		require.NoError(t, err, "%s\n%s", out, stderr)
		require.Contains(t, out, "SVID is valid")
	})

	t.Run("ok/treaty x509 fetch -write", func(t *testing.T) {
		dir := t.TempDir()
		out, stderr, err := runCmd(treatyBin, "x509", "fetch", "-socketPath", alpha.workload, "-write", dir)
		require.NoError(t, err, "%s\n%s", out, stderr)
		require.Contains(t, out, "spiffe://alpha.test/svc/e2e")
		for _, f := range []string{"svid.0.pem", "bundle.pem", "federated/devices.test.pem"} {
			require.FileExists(t, filepath.Join(dir, f))
		}
		info, err := os.Stat(filepath.Join(dir, "svid.0.key"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	})

	t.Run("fail/no entry for this workload", func(t *testing.T) {
		out := alpha.treaty("entry", "show", "-output", "json")
		var shown struct {
			Entries []struct {
				ID string `json:"id"`
			} `json:"entries"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &shown))
		for _, e := range shown.Entries {
			alpha.treaty("entry", "delete", "-entryID", e.ID)
		}
		waitFor(t, func() bool {
			_, stderr, err := runCmd(treatyBin, "x509", "fetch", "-socketPath", alpha.workload, "-timeout", "5s")
			return err != nil && strings.Contains(stderr, "no registration entry matches")
		}, "PermissionDenied once the entry is gone")
	})
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	return strings.Split(freePort(t), ":")[1]
}

// writeCACert writes a new CA certificate with the URI SAN uri as PEM.
func writeCACert(t *testing.T, path, uri string) {
	cert := testpki.CACert(t, uri)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600))
}

// tokenFromAgentOutput finds the JWT in `spire-agent api fetch jwt` output.
func tokenFromAgentOutput(t *testing.T, out string) string {
	t.Helper()
	for f := range strings.FieldsSeq(out) {
		if strings.Count(f, ".") == 2 && strings.HasPrefix(f, "ey") {
			return f
		}
	}
	t.Fatalf("no token in spire-agent output:\n%s", out)
	return ""
}

// TestCrossDomainMTLSExample runs the examples/mtls programs between two
// federated treaty servers: the allowed caller gets through, another
// alpha.test identity is refused with a log line that names it.
func TestCrossDomainMTLSExample(t *testing.T) {
	alpha, beta := federatedPair(t)
	alpha.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/svc/provisioning", "-selector", uidSelector, "-federatesWith", "beta.test", "-hint", "provisioning")
	alpha.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/svc/reporting", "-selector", uidSelector, "-federatesWith", "beta.test", "-hint", "reporting")
	beta.treaty("entry", "create", "-spiffeID", "spiffe://beta.test/svc/firmware", "-selector", uidSelector, "-federatesWith", "alpha.test")

	bin := t.TempDir()
	for _, prog := range []string{"server", "client"} {
		build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(bin, prog), "./examples/mtls/"+prog)
		build.Dir = repoRoot()
		out, err := build.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	addr := freePort(t)
	serverLog := startProcess(t, nil, filepath.Join(bin, "server"), "-socketPath", beta.workload, "-addr", addr)
	waitFor(t, func() bool { return strings.Contains(serverLog.String(), "serving") }, "the example server to start")

	call := func(hint string) (string, string, error) {
		return runCmd(filepath.Join(bin, "client"), "-socketPath", alpha.workload, "-url", "https://"+addr+"/", "-hint", hint)
	}
	out, stderr, err := call("provisioning")
	require.NoError(t, err, "%s\n%s\nserver: %s", out, stderr, serverLog)
	require.Contains(t, out, "hello spiffe://alpha.test/svc/provisioning")

	_, stderr, err = call("reporting")
	require.Error(t, err)
	require.Contains(t, stderr, "call failed")
	waitFor(t, func() bool {
		return strings.Contains(serverLog.String(), "caller refused") && strings.Contains(serverLog.String(), "spiffe://alpha.test/svc/reporting")
	}, "the refusal in the server log")
}

// federatedPair starts alpha.test and beta.test, both https_spiffe, each
// holding the other's bundle.
func federatedPair(t *testing.T) (*server, *server) {
	t.Helper()
	alphaAddr, betaAddr := freePort(t), freePort(t)
	endpoint := func(addr string) string {
		return "bundle_endpoint:\n  address: " + addr + "\n  profile: https_spiffe\n  refresh_hint: 2s\nca:\n  ca_ttl: 24h\nfederation:\n  min_refresh: 1s\n"
	}
	alpha, beta := newServer(t, "alpha.test", endpoint(alphaAddr)), newServer(t, "beta.test", endpoint(betaAddr))
	alpha.start()
	beta.start()
	dir := t.TempDir()
	for _, p := range []struct {
		from, to *server
		addr     string
	}{{alpha, beta, alphaAddr}, {beta, alpha, betaAddr}} {
		file := filepath.Join(dir, p.from.td+".json")
		require.NoError(t, os.WriteFile(file, []byte(p.from.treaty("bundle", "show", "-format", "spiffe")), 0o600))
		p.to.treaty("federation", "create", "-trustDomain", p.from.td, "-bundleEndpointURL", "https://"+p.addr,
			"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://"+p.from.td+"/spire/server",
			"-trustDomainBundlePath", file, "-trustDomainBundleFormat", "spiffe")
	}
	healthy := func(st relationshipStatus) bool { return st.State == "healthy" }
	waitStatus(t, alpha, "beta.test", healthy)
	waitStatus(t, beta, "alpha.test", healthy)
	return alpha, beta
}

// TestDemo runs `treaty demo` and checks what it achieved, not its wording.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	alphaPort, betaPort, servicePort := portOf(t, freePort(t)), portOf(t, freePort(t)), portOf(t, freePort(t))
	cmd := exec.CommandContext(ctx, treatyBin, "demo", "-output", "json", "-alphaPort", alphaPort, "-betaPort", betaPort, "-servicePort", servicePort)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "demo failed:\n%s", stderr.String())
	var res struct {
		AlphaSVIDs          []string `json:"alpha_svids"`
		BetaSVIDs           []string `json:"beta_svids"`
		AllowedCall         string   `json:"allowed_call"`
		RefusedCall         string   `json:"refused_call"`
		RotatedAuthority    string   `json:"rotated_authority"`
		RotationPropagation int64    `json:"rotation_propagation_ns"`
		CallAfterRotation   string   `json:"call_after_rotation"`
		Elapsed             int64    `json:"elapsed_ns"`
		AlphaEndpoint       string   `json:"alpha_endpoint"`
		BetaEndpoint        string   `json:"beta_endpoint"`
		ServiceURL          string   `json:"service_url"`
	}
	require.NoError(t, json.Unmarshal(out, &res), "%s", out)
	require.ElementsMatch(t, []string{"spiffe://alpha.test/svc/provisioning", "spiffe://alpha.test/svc/reporting"}, res.AlphaSVIDs)
	require.Equal(t, []string{"spiffe://beta.test/svc/firmware"}, res.BetaSVIDs)
	require.Equal(t, "hello spiffe://alpha.test/svc/provisioning", res.AllowedCall)
	require.Equal(t, "refused", res.RefusedCall)
	require.NotEmpty(t, res.RotatedAuthority)
	require.Positive(t, res.RotationPropagation)
	require.Equal(t, res.AllowedCall, res.CallAfterRotation)
	require.Contains(t, stderr.String(), "treaty federation create", "the timeline shows the commands")
	require.Equal(t, "https://127.0.0.1:"+alphaPort, res.AlphaEndpoint, "-alphaPort pins alpha's bundle endpoint")
	require.Equal(t, "https://127.0.0.1:"+betaPort, res.BetaEndpoint, "-betaPort pins beta's bundle endpoint")
	require.Equal(t, "https://127.0.0.1:"+servicePort+"/", res.ServiceURL, "-servicePort pins the mTLS service")
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return port
}
