package spiregw_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/syncbuf"
)

// spireVersion is the spire-server release tools/spire/build.sh builds.
const spireVersion = "v1.15.3"

// strict is set when TREATY_E2E=1 (CI): a missing spire-server then fails
// the tests instead of skipping them.
var strict = os.Getenv("TREATY_E2E") == "1"

// spireServerBinary finds the spire-server built by tools/spire/build.sh:
// $TREATY_SPIRE_SERVER, $TREATY_SPIRE_DIR/spire-server, the build script's
// cache directory, then $PATH. Without one the test is skipped, or fails in
// strict mode.
func spireServerBinary(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("TREATY_SPIRE_SERVER")}
	if dir := os.Getenv("TREATY_SPIRE_DIR"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "spire-server"))
	}
	if cache, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(cache, "treaty", "spire-"+spireVersion, "spire-server"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	if p, err := exec.LookPath("spire-server"); err == nil {
		return p
	}
	msg := "spire-server " + spireVersion + " not found: build it with tools/spire/build.sh (or set TREATY_SPIRE_DIR)"
	if strict {
		t.Fatal("strict mode (TREATY_E2E=1): " + msg)
	}
	t.Skip(msg)
	return ""
}

// spireServer is a real spire-server process for one test, with its admin
// socket and clients of the APIs the tests drive it through.
type spireServer struct {
	t      *testing.T
	td     spiffeid.TrustDomain
	bin    string
	conf   string
	socket string
	log    *syncBuffer

	cmd    *exec.Cmd
	exited chan struct{}

	bundles     bundlev1.BundleClient
	authorities localauthorityv1.LocalAuthorityClient
	tds         trustdomainv1.TrustDomainClient
	entries     entryv1.EntryClient
}

// startSPIRE starts a spire-server for td with its data (SQLite, keys on
// disk) in a temporary directory, so that it keeps its CA across a restart.
func startSPIRE(t *testing.T, td string) *spireServer {
	t.Helper()
	bin := spireServerBinary(t)
	dir := t.TempDir()
	// The socket lives in a short directory of its own: t.TempDir() paths
	// can exceed the 108 bytes a unix socket path may have.
	sockDir, err := os.MkdirTemp("", "spiregw") //nolint:usetesting // see above
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	s := &spireServer{t: t, td: spiffeid.RequireTrustDomainFromString(td), bin: bin,
		conf: filepath.Join(dir, "server.conf"), socket: filepath.Join(sockDir, "api.sock"), log: &syncBuffer{}}
	// The agent API must listen somewhere; the tests never use it.
	conf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "DEBUG"
  ca_key_type = "ec-p256"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = %q
    }
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = %q
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`, freePort(t), s.socket, td, dir, filepath.Join(dir, "datastore.sqlite3"), filepath.Join(dir, "keys.json"))
	require.NoError(t, os.WriteFile(s.conf, []byte(conf), 0o600))

	conn, err := grpc.NewClient("unix://"+s.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	s.bundles, s.authorities = bundlev1.NewBundleClient(conn), localauthorityv1.NewLocalAuthorityClient(conn)
	s.tds, s.entries = trustdomainv1.NewTrustDomainClient(conn), entryv1.NewEntryClient(conn)
	s.start()
	return s
}

// start runs the server (again) and waits until its admin API answers.
func (s *spireServer) start() {
	s.t.Helper()
	s.cmd = exec.CommandContext(context.Background(), s.bin, "run", "-config", s.conf) //nolint:gosec // the test's own binary and config
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	require.NoError(s.t, s.cmd.Start())
	s.exited = make(chan struct{})
	cmd, exited := s.cmd, s.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	s.t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !s.answers() {
		select {
		case <-exited:
			s.t.Fatalf("spire-server exited at start:\n%s", s.log)
		case <-deadline:
			s.t.Fatalf("spire-server did not answer on %s within 30s:\n%s", s.socket, s.log)
		case <-tick.C:
		}
	}
}

func (s *spireServer) answers() bool {
	ctx, cancel := context.WithTimeout(s.t.Context(), time.Second)
	defer cancel()
	_, err := s.bundles.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	return err == nil
}

// stop kills the server and waits until it is gone.
func (s *spireServer) stop() {
	s.t.Helper()
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// openStore opens a real treaty datastore in a temporary directory.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "treaty.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return store
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// eventually waits up to 20 s for cond, which asks SPIRE or treaty about
// something they do on their own time.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 50*time.Millisecond, append([]any{msg}, args...)...)
}

// within waits up to 20 s for ch to be closed.
func within(t *testing.T, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal(msg)
	}
}

// syncBuffer is a buffer a logger or a process may write while the test reads it.
type syncBuffer = syncbuf.Buffer
