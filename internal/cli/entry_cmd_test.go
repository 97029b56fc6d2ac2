package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/config"
)

func TestEntryCommands(t *testing.T) {
	socket, workload := startServerWithWorkload(t, "alpha.test")
	uid := "unix:uid:" + strconv.Itoa(os.Getuid())

	out, stderr, code := run(t, "", "entry", "create", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/svc/api",
		"-selector", uid, "-selector", "unix:gid:0", "-federatesWith", "spiffe://beta.test", "-dns", "api.alpha.test",
		"-x509SVIDTTL", "600", "-hint", "api")
	require.Zero(t, code, stderr)
	id := regexp.MustCompile(`Entry ID\s+: (\S+)`).FindStringSubmatch(out)[1]
	require.Equal(t, "Entry ID                : "+id+`
SPIFFE ID               : spiffe://alpha.test/svc/api
Parent ID               : spiffe://alpha.test/spire/server
Revision                : 0
X509-SVID TTL           : 600
JWT-SVID TTL            : default
Selector                : unix:gid:0
Selector                : `+uid+`
FederatesWith           : beta.test
DNS name                : api.alpha.test
Hint                    : api

`, out)
	require.Contains(t, stderr, "the server holds no bundle for beta.test yet: workloads of this entry get their SVID now")

	t.Run("ok/served at once over the Workload API", func(t *testing.T) {
		out, stderr, code := run(t, "", "x509", "fetch", "-socketPath", workload, "-output", "json")
		require.Zero(t, code, stderr)
		var got struct {
			SVIDs []struct {
				SPIFFEID string   `json:"spiffe_id"`
				DNSNames []string `json:"dns_names"`
			} `json:"svids"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.Len(t, got.SVIDs, 1)
		require.Equal(t, "spiffe://alpha.test/svc/api", got.SVIDs[0].SPIFFEID)
		require.Equal(t, []string{"api.alpha.test"}, got.SVIDs[0].DNSNames)
	})
	t.Run("fail/duplicate", func(t *testing.T) {
		_, stderr, code := run(t, "", "entry", "create", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/svc/api",
			"-selector", "unix:gid:0", "-selector", uid)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, `Failed to create the following entry (code: AlreadyExists`)
		require.Contains(t, stderr, id)
	})
	t.Run("fail/another trust domain", func(t *testing.T) {
		_, stderr, code := run(t, "", "entry", "create", "-socketPath", socket, "-spiffeID", "spiffe://beta.test/svc/api", "-selector", uid)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "not in this server's trust domain alpha.test")
	})
	t.Run("fail/storeSVID is refused, not dropped", func(t *testing.T) {
		_, stderr, code := run(t, "", "entry", "create", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/svc/stored", "-selector", uid, "-storeSVID")
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "store_svid is not supported")
	})
	t.Run("fail/no selector", func(t *testing.T) {
		_, stderr, code := run(t, "", "entry", "create", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/svc/x")
		require.Equal(t, 2, code)
		require.Contains(t, stderr, "at least one -selector is required")
	})
	t.Run("ok/data file and federates with all", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "entries.json")
		require.NoError(t, os.WriteFile(data, []byte(`{"entries": [{"spiffe_id": "spiffe://alpha.test/svc/batch",
			"selectors": [{"type": "unix", "value": "uid:4242"}], "federates_with": ["*"]}]}`), 0o600))
		out, stderr, code := run(t, "", "entry", "create", "-socketPath", socket, "-data", data)
		require.Zero(t, code, stderr)
		require.Contains(t, out, "FederatesWith           : *")
		require.Empty(t, stderr, "* needs no bundle")
	})
	t.Run("ok/show, count and filters", func(t *testing.T) {
		out, _, code := run(t, "", "entry", "show", "-socketPath", socket)
		require.Zero(t, code)
		require.Regexp(t, `^Found 2 entries\n`, out)
		out, _, _ = run(t, "", "entry", "show", "-socketPath", socket, "-selector", uid)
		require.Regexp(t, `^Found 1 entry\nEntry ID\s+: `+id, out)
		out, _, _ = run(t, "", "entry", "count", "-socketPath", socket, "-federatesWith", "beta.test")
		require.Equal(t, "1 registration entry\n", out)
		out, _, _ = run(t, "", "entry", "count", "-socketPath", socket)
		require.Equal(t, "2 registration entries\n", out)
	})
	t.Run("ok/update raises the revision", func(t *testing.T) {
		out, stderr, code := run(t, "", "entry", "update", "-socketPath", socket, "-entryID", id,
			"-spiffeID", "spiffe://alpha.test/svc/api", "-selector", uid, "-hint", "renamed")
		require.Zero(t, code, stderr)
		require.Contains(t, out, "Revision                : 1\n")
		require.Contains(t, out, "Hint                    : renamed\n")
		require.NotContains(t, out, "FederatesWith", "update replaces the whole entry, as spire-server's does")
	})
	t.Run("ok/delete", func(t *testing.T) {
		out, stderr, code := run(t, "", "entry", "delete", "-socketPath", socket, "-entryID", id)
		require.Zero(t, code, stderr)
		require.Equal(t, "Deleted entry with ID: "+id+"\n\n\nDeleted 1 entries successfully", out)
		_, stderr, code = run(t, "", "entry", "delete", "-socketPath", socket, "-entryID", id)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "(code: NotFound")
	})
}

// TestAuditTrail checks the audit records of admin changes: caller, operation,
// target, result, in the JSON-lines file.
func TestAuditTrail(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "treaty-audit") //nolint:usetesting // unix socket paths must stay short
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	socket := startWith(t, config.Overrides{TrustDomain: "alpha.test", DataDir: t.TempDir(),
		AdminSocket: filepath.Join(sockDir, "admin.sock"), WorkloadSocket: filepath.Join(sockDir, "wl.sock")}, func(c *config.Config) { c.AuditLog = audit })
	_, stderr, code := run(t, "", "entry", "create", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/x", "-selector", "unix:uid:1")
	require.Zero(t, code, stderr)
	_, _, code = run(t, "", "localauthority", "x509", "activate", "-socketPath", socket, "-authorityID", "nope")
	require.NotZero(t, code)
	_, _, code = run(t, "", "entry", "show", "-socketPath", socket)
	require.Zero(t, code)

	data, err := os.ReadFile(audit)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 2, "reads are not audited:\n%s", data)
	var created, refused struct {
		CallerUID int    `json:"caller_uid"`
		CallerPID int    `json:"caller_pid"`
		Operation string `json:"operation"`
		Target    string `json:"target"`
		Result    string `json:"result"`
		Message   string `json:"message"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &created))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &refused))
	require.Equal(t, "/spire.api.server.entry.v1.Entry/BatchCreateEntry", created.Operation)
	require.Equal(t, os.Getuid(), created.CallerUID)
	require.Equal(t, os.Getpid(), created.CallerPID, "the CLI ran in this process")
	require.Contains(t, created.Target, "/x")
	require.Equal(t, "ok", created.Result)
	require.Equal(t, "/spire.api.server.localauthority.v1.LocalAuthority/ActivateX509Authority", refused.Operation)
	require.NotEqual(t, "ok", refused.Result)
	require.NotEmpty(t, refused.Message)
	info, err := os.Stat(audit)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}
