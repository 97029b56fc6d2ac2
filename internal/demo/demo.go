// Package demo runs treaty's guided demonstration: two trust domains on
// loopback that bootstrap a federation as operators would, give their
// workloads SVIDs over the Workload API, do cross-domain mTLS authorised
// by SPIFFE ID, and survive a CA rotation, with every step printed next to
// the CLI command that does it.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/server"
)

// Config configures a demo run.
type Config struct {
	// Out receives the timeline.
	Out io.Writer
	// CLI runs a treaty command in-process (cli.Main), so every step is the
	// very command an operator would type.
	CLI func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	// Keep leaves both servers running after the demo until ctx is done.
	Keep bool
	// Dir holds the demo's files; default a new temporary directory,
	// removed at the end unless Keep is set.
	Dir string
	// AlphaPort, BetaPort and ServicePort are the loopback ports of
	// alpha.test's and beta.test's bundle endpoints and of beta.test's
	// mTLS service, so that a firewall rule or a second terminal can name
	// them; zero picks a free port.
	AlphaPort, BetaPort, ServicePort int
}

// Result is the outcome of a run, for tests and `-output json`.
type Result struct {
	Dir                 string        `json:"dir"`
	AlphaSVIDs          []string      `json:"alpha_svids"`
	BetaSVIDs           []string      `json:"beta_svids"`
	AllowedCall         string        `json:"allowed_call"`
	RefusedCall         string        `json:"refused_call"`
	RotatedAuthority    string        `json:"rotated_authority"`
	RotationPropagation time.Duration `json:"rotation_propagation_ns"`
	CallAfterRotation   string        `json:"call_after_rotation"`
	Elapsed             time.Duration `json:"elapsed_ns"`
	AlphaEndpoint       string        `json:"alpha_endpoint"`
	BetaEndpoint        string        `json:"beta_endpoint"`
	ServiceURL          string        `json:"service_url"`
}

// run is one demo in progress.
type run struct {
	cfg   Config
	start time.Time
	step  int
	dir   string
	alpha *domain
	beta  *domain
	// workloads is set once the workloads have their SVIDs.
	workloads *workloads
	res       Result
}

// domain is one of the demo's trust domains.
type domain struct {
	name, dir                   string
	adminSocket, workloadSocket string
	endpointURL                 string
	logFile                     *os.File
	done                        chan error
	stop                        context.CancelFunc
}

// Run runs the demo and returns its result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	r := &run{cfg: cfg, start: time.Now()}
	dir := cfg.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "treaty-demo-"); err != nil {
			return nil, err
		}
		if !cfg.Keep {
			defer func() { _ = os.RemoveAll(dir) }()
		}
	}
	r.dir, r.res.Dir = dir, dir
	defer r.stopAll()
	if err := r.all(ctx); err != nil {
		return &r.res, err
	}
	r.res.Elapsed = time.Since(r.start)
	r.say("Done in %s: federation, mTLS with authorisation and a CA rotation, all on loopback.", r.res.Elapsed.Round(100*time.Millisecond))
	if cfg.Keep {
		r.keep(ctx)
	}
	return &r.res, nil
}

func (r *run) all(ctx context.Context) error {
	steps := []func(context.Context) error{
		r.startServers, r.bootstrap, r.waitFederated, r.register, r.fetchSVIDs, r.mtls, r.rotate, r.status,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// say prints a line of the timeline.
func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.cfg.Out, format+"\n", args...)
}

// heading starts a numbered step.
func (r *run) heading(format string, args ...any) {
	r.step++
	r.say("\n[%5.1fs] %d. %s", time.Since(r.start).Seconds(), r.step, fmt.Sprintf(format, args...))
}

// treaty runs a CLI command, printing it as an operator would type it and
// its output indented under it. It returns stdout.
func (r *run) treaty(ctx context.Context, show bool, args ...string) (string, error) {
	r.say("    $ treaty %s", r.shorten(strings.Join(args, " ")))
	var stdout, stderr bytes.Buffer
	code := r.cfg.CLI(ctx, args, &stdout, &stderr)
	if show {
		r.indent(stdout.String())
	}
	r.indent(stderr.String())
	if code != 0 {
		return "", fmt.Errorf("treaty %s failed (exit %d): %s", args[0], code, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (r *run) indent(text string) {
	for line := range strings.SplitSeq(strings.TrimRight(text, "\n"), "\n") {
		if line != "" {
			r.say("      %s", line)
		}
	}
}

// shorten writes paths inside the demo directory relative to it.
func (r *run) shorten(s string) string { return strings.ReplaceAll(s, r.dir+"/", "") }

// pickPort returns fixed, or a free loopback port when fixed is zero.
func pickPort(ctx context.Context, fixed int) (int, error) {
	if fixed != 0 {
		return fixed, nil
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServers writes both configurations and starts the servers.
func (r *run) startServers(ctx context.Context) error {
	r.say("treaty demo: two trust domains federate, their workloads call each other over mTLS,")
	r.say("and beta.test rotates its CA while the calls keep working. Files: %s", r.dir)
	pki, err := newWebPKI(filepath.Join(r.dir, "demo-web-ca.pem"), filepath.Join(r.dir, "beta-endpoint.pem"), filepath.Join(r.dir, "beta-endpoint.key"))
	if err != nil {
		return err
	}
	r.heading("Start alpha.test: bundle endpoint profile https_spiffe (it authenticates with its own SVID)")
	if r.alpha, err = r.startDomain(ctx, "alpha.test", r.cfg.AlphaPort, func(port int) string {
		return fmt.Sprintf(`bundle_endpoint:
  address: 127.0.0.1:%d
  profile: https_spiffe
  refresh_hint: 2s
federation:
  min_refresh: 1s
  ca_file: %s
`, port, pki.caFile)
	}); err != nil {
		return err
	}
	r.heading("Start beta.test: bundle endpoint profile https_web (a certificate from a web CA; here a demo CA)")
	r.beta, err = r.startDomain(ctx, "beta.test", r.cfg.BetaPort, func(port int) string {
		return fmt.Sprintf(`bundle_endpoint:
  address: 127.0.0.1:%d
  profile: https_web
  refresh_hint: 2s
  web:
    cert_file: %s
    key_file: %s
federation:
  min_refresh: 1s
`, port, pki.certFile, pki.keyFile)
	})
	if err != nil {
		return err
	}
	r.res.AlphaEndpoint, r.res.BetaEndpoint = r.alpha.endpointURL, r.beta.endpointURL
	return nil
}

func (r *run) startDomain(ctx context.Context, name string, fixedPort int, endpoint func(port int) string) (*domain, error) {
	short := strings.TrimSuffix(name, ".test")
	d := &domain{name: name, dir: filepath.Join(r.dir, short), done: make(chan error, 1)}
	port, err := pickPort(ctx, fixedPort)
	if err != nil {
		return nil, err
	}
	d.adminSocket = filepath.Join(d.dir, "admin.sock")
	d.workloadSocket = filepath.Join(d.dir, "public", "workload.sock")
	d.endpointURL = "https://127.0.0.1:" + strconv.Itoa(port)
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	yaml := fmt.Sprintf("trust_domain: %s\ndata_dir: %s\nadmin_socket: %s\nworkload_socket: %s\nca:\n  ca_ttl: 24h\n  x509_svid_ttl: 10m\n%s",
		name, filepath.Join(d.dir, "data"), d.adminSocket, d.workloadSocket, endpoint(port))
	cfgFile := filepath.Join(r.dir, short+".yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Build(cfgFile, config.Overrides{})
	if err != nil {
		return nil, err
	}
	if d.logFile, err = os.Create(filepath.Join(r.dir, short+".log")); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(d.logFile, nil))
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stop = stop
	go func() { d.done <- srv.Run(runCtx) }()
	r.say("    $ treaty server run -config %s      (logs: %s)", r.shorten(cfgFile), r.shorten(d.logFile.Name()))
	r.say("    bundle endpoint %s, admin socket %s, Workload API %s", d.endpointURL, r.shorten(d.adminSocket), r.shorten(d.workloadSocket))
	return d, nil
}

func (r *run) stopAll() {
	if err := r.workloads.close(); err != nil {
		r.say("the demo service stopped with an error: %v", err)
	}
	for _, d := range []*domain{r.alpha, r.beta} {
		if d == nil {
			continue
		}
		d.stop()
		if err := <-d.done; err != nil {
			r.say("%s stopped with an error: %v (see %s)", d.name, err, r.shorten(d.logFile.Name()))
		}
		_ = d.logFile.Close()
	}
}

// bootstrap creates both relationships the way operators do.
func (r *run) bootstrap(ctx context.Context) error {
	r.heading("Bootstrap the federation (by hand here; treaty federation invite and join do it in two commands)")
	r.say("    beta.test cannot authenticate alpha.test's https_spiffe endpoint without alpha's bundle,")
	r.say("    so alpha's operator hands it over once (later rotations travel over the endpoint):")
	doc, err := r.treaty(ctx, false, "bundle", "show", "-socketPath", r.alpha.adminSocket, "-format", "spiffe")
	if err != nil {
		return err
	}
	bootstrap := filepath.Join(r.dir, "alpha-bundle.json")
	if err := os.WriteFile(bootstrap, []byte(doc), 0o600); err != nil {
		return err
	}
	r.say("      (saved as %s)", r.shorten(bootstrap))
	if _, err := r.treaty(ctx, true, "federation", "create", "-socketPath", r.beta.adminSocket,
		"-trustDomain", "alpha.test", "-bundleEndpointURL", r.alpha.endpointURL,
		"-bundleEndpointProfile", string(profile.HTTPSSPIFFE), "-endpointSpiffeID", "spiffe://alpha.test/spire/server",
		"-trustDomainBundlePath", bootstrap, "-trustDomainBundleFormat", "spiffe"); err != nil {
		return err
	}
	r.say("    alpha.test checks beta.test's https_web endpoint with web PKI (the demo CA is in its")
	r.say("    federation.ca_file), so nothing is copied in this direction:")
	_, err = r.treaty(ctx, true, "federation", "create", "-socketPath", r.alpha.adminSocket,
		"-trustDomain", "beta.test", "-bundleEndpointURL", r.beta.endpointURL, "-bundleEndpointProfile", string(profile.HTTPSWeb))
	return err
}

// statusOf returns a domain's federation status as JSON.
func (r *run) statusOf(ctx context.Context, d *domain) (map[string]adminwire.RelationshipStatus, error) {
	var stdout, stderr bytes.Buffer
	if code := r.cfg.CLI(ctx, []string{"federation", "status", "-socketPath", d.adminSocket, "-output", "json"}, &stdout, &stderr); code != 0 {
		return nil, errors.New(strings.TrimSpace(stderr.String()))
	}
	var st adminwire.StatusResponse
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return nil, err
	}
	out := map[string]adminwire.RelationshipStatus{}
	for _, row := range st.Relationships {
		out[row.TrustDomain] = row
	}
	return out, nil
}

// waitFederated waits until each side has fetched the other's bundle.
func (r *run) waitFederated(ctx context.Context) error {
	r.heading("Both sides fetch each other's bundle from the bundle endpoints")
	for _, pair := range [][2]*domain{{r.alpha, r.beta}, {r.beta, r.alpha}} {
		d, partner := pair[0], pair[1]
		var last adminwire.RelationshipStatus
		err := poll(ctx, 20*time.Second, func() (bool, error) {
			st, err := r.statusOf(ctx, d)
			if err != nil {
				return false, err
			}
			last = st[partner.name]
			return last.State == "healthy", nil
		})
		if err != nil {
			return fmt.Errorf("%s never fetched %s's bundle (state %q: %s): %w", d.name, partner.name, last.State, last.LastError, err)
		}
		r.say("    %s holds %s's bundle (sequence %d), fetched over %s", d.name, partner.name, last.Sequence, partner.endpointURL)
	}
	return nil
}

// poll calls cond every 100ms until it is true or limit passes.
func poll(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s", limit)
		case <-tick.C:
		}
	}
}

// keep leaves the servers running and prints how to poke at them.
func (r *run) keep(ctx context.Context) {
	r.say("\nBoth servers keep running (-keep). Try, from the repository root:")
	for _, d := range []*domain{r.alpha, r.beta} {
		r.say("  go run ./cmd/treaty federation status -socketPath %s", d.adminSocket)
		r.say("  go run ./cmd/treaty entry show -socketPath %s", d.adminSocket)
		r.say("  go run ./cmd/treaty x509 fetch -socketPath %s", d.workloadSocket)
	}
	r.say("  go run ./cmd/treaty probe %s -caFile %s", r.beta.endpointURL, filepath.Join(r.dir, "demo-web-ca.pem"))
	r.say("Press Ctrl-C to stop; then remove %s.", r.dir)
	<-ctx.Done()
}
