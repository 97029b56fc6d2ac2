// Package pgtest runs a real PostgreSQL for tests: a private cluster made
// with initdb in a temporary directory, listening on a loopback port only,
// run as an unprivileged user (PostgreSQL refuses to run as root), with
// password authentication, and stopped when the tests end.
//
// A package's tests share one cluster (Shared) and take a fresh database
// each (NewDatabase); tests that stop or kill PostgreSQL start their own
// (Start). Without the PostgreSQL binaries the tests skip, or fail under
// TREATY_E2E=1 (strict mode, as CI runs).
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binDirs are where PostgreSQL's server programs are looked for, after
// $TREATY_PG_BIN: Debian's versioned directory first, as pg_ctl is not on
// PATH there.
var binDirs = []string{"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"}

// SuperUser is the cluster's superuser, the user tests connect as.
const SuperUser = "treaty"

// Cluster is one running PostgreSQL.
type Cluster struct {
	// Dir holds the cluster's data (and its log, postgres.log).
	Dir string
	// Port is the loopback port it listens on.
	Port int
	// Password is SuperUser's password.
	Password string

	bin  string
	cred *syscall.Credential // nil when not running as root
	dbs  atomic.Int64
}

// Bin returns the directory holding initdb and pg_ctl, or an error saying
// how to install them.
func Bin() (string, error) {
	dirs := binDirs
	if d := os.Getenv("TREATY_PG_BIN"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil { //nolint:gosec // the directories are the test's own choice
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server programs (initdb, pg_ctl) not found: install the Debian package postgresql, or set TREATY_PG_BIN")
}

// Start makes and starts a new cluster; it is stopped when t's test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		if os.Getenv("TREATY_E2E") == "1" {
			t.Fatalf("strict mode (TREATY_E2E=1): %v", err)
		}
		t.Skip(err)
	}
	c, err := start(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err == nil {
			_ = c.Remove()
		}
	})
	return c
}

// StartCluster makes and starts a new cluster outside a test, for programs
// such as the bench harness. The caller stops it with Stop and deletes its
// files with Remove.
func StartCluster() (*Cluster, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	return start(bin)
}

var shared struct {
	sync.Mutex
	c   *Cluster
	err error
}

// Shared returns the cluster every test of the package shares, starting
// it on first use; Main stops it.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		if os.Getenv("TREATY_E2E") == "1" {
			t.Fatalf("strict mode (TREATY_E2E=1): %v", err)
		}
		t.Skip(err)
	}
	shared.Lock()
	defer shared.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = start(bin)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.c
}

// Main runs the package's tests and stops the shared cluster, if one was
// started: call it from TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop the shared cluster:", err)
		} else {
			_ = shared.c.Remove()
		}
	}
	return code
}

// NewDatabase creates an empty database on the shared cluster for t and
// returns its DSN (without the password: see Cluster.Password).
func NewDatabase(t testing.TB) (*Cluster, string) {
	t.Helper()
	c := Shared(t)
	dsn, err := c.CreateDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c, dsn
}

func start(bin string) (*Cluster, error) {
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	c := &Cluster{bin: bin, Password: hex.EncodeToString(pw)}
	dir, err := os.MkdirTemp("", "treaty-pg-")
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	if os.Geteuid() == 0 {
		if c.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	if c.cred != nil {
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := c.writeOwned(pwfile, c.Password+"\n"); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", SuperUser, "--pwfile", pwfile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	_ = os.Remove(pwfile)
	if err := c.Restart(); err != nil {
		return nil, err
	}
	return c, nil
}

// unprivileged returns the user PostgreSQL runs as when the tests run as
// root: "postgres" (which the Debian package creates), else "nobody".
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root, and neither user postgres nor nobody exists to run PostgreSQL as")
}

func (c *Cluster) writeOwned(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if c.cred != nil {
		return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
	}
	return nil
}

// run runs one of PostgreSQL's programs as the cluster's user.
func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...) //nolint:gosec // PostgreSQL's own programs, found by Bin
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Restart starts the cluster (again, after Stop or Kill), on its port if it
// had one, else on a free loopback port.
func (c *Cluster) Restart() error {
	var lastErr error
	for range 5 {
		if c.Port == 0 || lastErr != nil {
			port, err := freePort()
			if err != nil {
				return err
			}
			c.Port = port
		}
		opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200", c.Port)
		out, err := c.run("pg_ctl", "start", "-w", "-t", "60", "-D", filepath.Join(c.Dir, "data"),
			"-l", filepath.Join(c.Dir, "postgres.log"), "-o", opts)
		if err == nil {
			return nil
		}
		lastErr = fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, c.Log())
	}
	return lastErr
}

// Stop stops the cluster, letting it finish what it was doing.
func (c *Cluster) Stop() error {
	out, err := c.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", filepath.Join(c.Dir, "data"))
	if err != nil && !bytes.Contains(out, []byte("Is server running?")) {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Kill stops the cluster the hard way (immediate shutdown: no checkpoint,
// as after a crash); Restart recovers it.
func (c *Cluster) Kill() error {
	out, err := c.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", filepath.Join(c.Dir, "data"))
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %w\n%s", err, out)
	}
	return nil
}

// Remove deletes the cluster's files; call it after Stop.
func (c *Cluster) Remove() error { return os.RemoveAll(c.Dir) }

// Log returns the end of the server's log, for failure messages.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// DSN returns the connection string of database db, without the password.
func (c *Cluster) DSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(SuperUser), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)), Path: "/" + db}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

// CreateDatabase creates a new, empty database and returns its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test_%d", c.dbs.Add(1))
	if err := c.Exec(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return c.DSN(name), nil
}

// Exec runs SQL on database db as the superuser: to create databases, and
// for tests that reach under treaty (to break a schema on purpose, say).
func (c *Cluster) Exec(ctx context.Context, db, sql string) error {
	cfg, err := pgx.ParseConfig(c.DSN(db))
	if err != nil {
		return err
	}
	cfg.Password = c.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", db, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil //nolint:forcetypeassert // a TCP listener's address
}
