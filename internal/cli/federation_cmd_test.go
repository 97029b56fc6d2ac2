package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/server"
)

// TestFederationURLWithUserinfo: a bundle endpoint URL with a user name or
// password is refused with the reason and the fix, and one stored by an
// older version is listed without its password.
func TestFederationURLWithUserinfo(t *testing.T) {
	const password = "s3cr3t-pw"
	dataDir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(dataDir, 0o700))
	store, err := sqlite.Open(t.Context(), filepath.Join(dataDir, server.DatabaseFile))
	require.NoError(t, err)
	_, err = store.CreateRelationship(t.Context(), datastore.Relationship{
		TrustDomain: spiffeid.RequireTrustDomainFromString("old.test"), EndpointURLs: []string{"https://admin:" + password + "@127.0.0.1:1/"},
		Profile: string(profile.HTTPSWeb), CreatedAt: time.Now(), UpdatedAt: time.Now(),
	}, nil)
	require.NoError(t, err)
	require.NoError(t, store.Close())
	sockDir, err := os.MkdirTemp("", "treaty-cli") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	socket := startWith(t, config.Overrides{TrustDomain: "alpha.test", DataDir: dataDir, AdminSocket: filepath.Join(sockDir, "admin.sock"), WorkloadSocket: filepath.Join(sockDir, "w", "workload.sock")}, nil)

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "fail/create with password", args: []string{"federation", "create", "-trustDomain", "beta.test", "-bundleEndpointURL", "https://admin:" + password + "@beta.example/", "-bundleEndpointProfile", "https_web"},
			code: 1, stderr: `bundle_endpoint_url "https://admin:xxxxx@beta.example/": ` + federation.ErrEndpointUserinfo.Error()},
		{name: "fail/update with password", args: []string{"federation", "update", "-trustDomain", "old.test", "-bundleEndpointURL", "https://" + password + "@old.example/", "-bundleEndpointProfile", "https_web"},
			code: 1, stderr: `"https://xxxxx@old.example/": a bundle endpoint URL must not hold a user name or password`},
		{name: "ok/list shows a stored password redacted", args: []string{"federation", "list"}, stdout: "Bundle endpoint URL       : https://admin:xxxxx@127.0.0.1:1/\n"},
		{name: "ok/show json redacted", args: []string{"federation", "show", "-trustDomain", "old.test", "-output", "json"}, stdout: `"https://admin:xxxxx@127.0.0.1:1/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, "", append(tc.args, "-socketPath", socket)...)
			require.Equal(t, tc.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Contains(t, stdout, tc.stdout)
			require.Contains(t, stderr, tc.stderr)
			require.NotContains(t, stdout+stderr, password)
		})
	}

	// The refresher refuses the stored URL; status says so, redacted.
	require.Eventually(t, func() bool {
		stdout, _, _ := run(t, "", "federation", "status", "-socketPath", socket)
		return strings.Contains(stdout, "must not hold a user name or password")
	}, 10*time.Second, 20*time.Millisecond)
	stdout, stderr, code := run(t, "", "federation", "status", "-socketPath", socket)
	require.Zero(t, code, stderr)
	require.Contains(t, stdout, "admin:xxxxx@127.0.0.1:1")
	require.NotContains(t, stdout, password)
}

// TestFederationEndpointIDInAnotherTrustDomain: create and update refuse an
// endpoint SPIFFE ID outside the partner's trust domain before they call
// the server, in the words onboarding check uses.
func TestFederationEndpointIDInAnotherTrustDomain(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("beta.test")
	want := profile.CheckEndpointSPIFFEID(td, spiffeid.RequireFromString("spiffe://gamma.test/spire/server")).Error()
	for _, verb := range []string{"create", "update"} {
		t.Run("fail/"+verb, func(t *testing.T) {
			_, stderr, code := run(t, "", "federation", verb, "-trustDomain", "beta.test", "-bundleEndpointURL", "https://beta.example/",
				"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://gamma.test/spire/server", "-socketPath", "/nonexistent/admin.sock")
			require.NotZero(t, code)
			require.Contains(t, stderr, "-endpointSpiffeID "+want)
		})
	}
}

// With replicas sharing a database, federation status names the replica
// that polls each partner; a single server's table has no such column.
func TestPrintStatusNamesThePoller(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	row := adminwire.RelationshipStatus{TrustDomain: "beta.test", State: "healthy", Sequence: 3, Endpoint: "https://beta.test/bundle"}
	for _, tc := range []struct {
		name     string
		polledBy string
		want     string
	}{
		{"ok/single server", "", "TRUST DOMAIN  STATE    LAST SUCCESS  FAILURES  SEQUENCE  EARLIEST EXPIRY  ENDPOINT\n" +
			"beta.test     healthy  never         0         3         -                https://beta.test/bundle\n"},
		{"ok/replicas", "node-a-1f2e3d", "TRUST DOMAIN  STATE    LAST SUCCESS  FAILURES  SEQUENCE  EARLIEST EXPIRY  ENDPOINT                  POLLED BY\n" +
			"beta.test     healthy  never         0         3         -                https://beta.test/bundle  node-a-1f2e3d\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			r := row
			r.PolledBy = tc.polledBy
			require.NoError(t, printStatus(&env{stdout: &out, stderr: io.Discard}, adminwire.StatusResponse{Relationships: []adminwire.RelationshipStatus{r}}, now))
			require.Equal(t, tc.want, out.String())
		})
	}
}

// TestPrintStatusNamesTheOnboardingFile: a relationship from an onboarding
// file says which, since the CLI cannot change it.
func TestPrintStatusNamesTheOnboardingFile(t *testing.T) {
	var out bytes.Buffer
	r := adminwire.RelationshipStatus{TrustDomain: "beta.test", State: "healthy", ManagedBy: "onboarding:beta.yaml"}
	require.NoError(t, printStatus(&env{stdout: &out, stderr: io.Discard}, adminwire.StatusResponse{Relationships: []adminwire.RelationshipStatus{r}}, time.Now()))
	require.Contains(t, out.String(), "\nbeta.test: from the onboarding file beta.yaml (change the file, not the relationship)\n")
}
