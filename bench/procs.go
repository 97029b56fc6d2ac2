package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/treatyhq/treaty/internal/profile"
)

// harness carries the run's configuration and results.
type harness struct {
	cfg  config
	work string
	res  *results
	seq  int
}

// proc is a server process the harness started.
type proc struct {
	name    string
	cmd     *exec.Cmd
	socket  string // admin socket
	wlSock  string // Workload API socket (treaty)
	addr    string // bundle endpoint host:port
	agent   string // agent API host:port (SPIRE's bind port; treaty's agent_api when configured)
	started time.Time
	exited  chan struct{}
	log     *os.File
}

func buildTreaty(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "treaty")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/treaty") //nolint:gosec // builds this repository
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build treaty: %w", err)
	}
	return bin, nil
}

// dir returns a fresh short directory (unix socket paths are limited).
func (h *harness) dir(name string) string {
	h.seq++
	d := filepath.Join(h.work, fmt.Sprintf("%d-%s", h.seq, name))
	_ = os.MkdirAll(d, 0o700)
	return d
}

// treatyOpts shape a treaty server.
type treatyOpts struct {
	profile     string // https_spiffe (default) or https_web
	certFile    string
	keyFile     string
	refreshHint string
	caFile      string // federation.ca_file
	extra       string
}

func (h *harness) startTreaty(ctx context.Context, name string, o treatyOpts) (*proc, error) {
	d := h.dir(name)
	port, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	if o.profile == "" {
		o.profile = string(profile.HTTPSSPIFFE)
	}
	if o.refreshHint == "" {
		o.refreshHint = "5m"
	}
	p := &proc{name: name, socket: filepath.Join(d, "admin.sock"), wlSock: filepath.Join(d, "wl.sock"), addr: fmt.Sprintf("127.0.0.1:%d", port)}
	yaml := fmt.Sprintf("trust_domain: %s\ndata_dir: %s\nadmin_socket: %s\nworkload_socket: %s\nlog_level: warn\n"+
		"ca:\n  ca_ttl: 720h\nbundle_endpoint:\n  address: %s\n  profile: %s\n  refresh_hint: %s\n",
		name, filepath.Join(d, "data"), p.socket, p.wlSock, p.addr, o.profile, o.refreshHint)
	if o.profile == string(profile.HTTPSWeb) {
		yaml += fmt.Sprintf("  web:\n    cert_file: %s\n    key_file: %s\n", o.certFile, o.keyFile)
	}
	if o.caFile != "" {
		yaml += "federation:\n  ca_file: " + o.caFile + "\n"
	}
	yaml += o.extra
	conf := filepath.Join(d, "treaty.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	return p, h.start(ctx, p, d, nil, h.cfg.treaty, "server", "run", "-config", conf)
}

func (h *harness) startSPIRE(ctx context.Context, name string, env []string) (*proc, error) {
	d := h.dir("spire-" + name)
	apiPort, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	fedPort, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	p := &proc{name: "spire " + name, socket: filepath.Join(d, "api.sock"), addr: fmt.Sprintf("127.0.0.1:%d", fedPort), agent: fmt.Sprintf("127.0.0.1:%d", apiPort)}
	conf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = "%s"
  trust_domain = "%s"
  data_dir = "%s"
  log_level = "WARN"
  ca_key_type = "ec-p256"
  # Simulated agents attest from one IP; SPIRE's default of one attestation
  # per second per IP would measure the limiter, not the server.
  ratelimit {
    attestation = false
    signing = false
  }
  federation {
    bundle_endpoint {
      address = "127.0.0.1"
      port = %d
    }
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "%s"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`, apiPort, p.socket, name, d, fedPort, filepath.Join(d, "datastore.sqlite3"))
	file := filepath.Join(d, "server.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return p, h.start(ctx, p, d, env, h.cfg.spire, "run", "-config", file)
}

func (h *harness) start(ctx context.Context, p *proc, dir string, env []string, bin string, args ...string) error {
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	p.log = log
	// The server outlives ctx's cancellation so that stop can end it
	// gracefully and measure nothing half-dead.
	p.cmd = exec.CommandContext(context.WithoutCancel(ctx), bin, args...) //nolint:gosec // the treaty or spire-server binary given to the harness
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return nil
}

// stop ends the process (SIGTERM, then SIGKILL after 10 s).
func (p *proc) stop() {
	if p == nil || p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	_ = p.log.Close()
}

// dial connects to the admin socket.
func (p *proc) dial() (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+p.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// rssKB reads the process's resident set size.
func (p *proc) rssKB() (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuTime reads the process's user+system CPU time.
func (p *proc) cpuTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may contain spaces) start after ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}
