// Command bench measures treaty side by side with SPIRE and with a bare Go
// HTTPS server (the practical limit), on loopback, and writes
// bench/RESULTS.md and bench/results.json. Run it with `make bench`. Every
// load loop is bounded in time; every process it starts is stopped.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	out := flag.String("out", "bench", "directory for RESULTS.md and results.json")
	duration := flag.Duration("duration", 10*time.Second, "length of each throughput run")
	scale := flag.String("scale", "100,1000,10000", "federation sizes for treaty (SPIRE runs the first two)")
	agents := flag.Int("agents", 1000, "simulated agents in the agents section")
	treatyBin := flag.String("treaty", "", "treaty binary (default: built into a temporary directory)")
	spireBin := flag.String("spire", defaultSPIRE(), "spire-server binary (tools/spire/build.sh builds it)")
	bare := flag.String("bare-serve", "", "internal: serve BODY with CERT and KEY as the bare server (dir holding body, cert.pem, key.pem)")
	only := flag.String("only", "", "run only these measurements (comma-separated, e.g. rotation,footprint); results are written only for a full run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if *bare != "" {
		err := serveBare(ctx, *bare)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench bare server:", err)
			os.Exit(1)
		}
		return
	}
	err := run(ctx, config{out: *out, duration: *duration, scale: *scale, agents: *agents, treaty: *treatyBin, spire: *spireBin, only: *only})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	out      string
	duration time.Duration
	scale    string
	agents   int
	treaty   string
	spire    string
	only     string
}

func defaultSPIRE() string {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "spire-server"
	}
	return filepath.Join(cache, "treaty", "spire-v1.15.3", "spire-server")
}

func run(ctx context.Context, cfg config) error {
	work, err := os.MkdirTemp("", "treaty-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if cfg.treaty == "" {
		if cfg.treaty, err = buildTreaty(ctx, work); err != nil {
			return err
		}
	}
	if _, err := os.Stat(cfg.spire); err != nil {
		return fmt.Errorf("spire-server not found at %s: run make spire (tools/spire/build.sh) first", cfg.spire)
	}
	r := newResults()
	h := &harness{cfg: cfg, work: work, res: r}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"footprint", h.footprint},
		{"throughput", h.throughput},
		{"handshakes", h.handshakes},
		{"conditional", h.conditional},
		{"rotation", h.rotation},
		{"workload", h.workloadAPI},
		{"scale", h.scaleRuns},
		{"agents", h.agentRuns},
		{"replicas", h.replicaRuns},
	}
	for _, s := range steps {
		if cfg.only != "" && !slices.Contains(strings.Split(cfg.only, ","), s.name) {
			continue
		}
		logf("== %s", s.name)
		start := time.Now()
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		logf("   %s done in %s", s.name, time.Since(start).Round(time.Second))
	}
	if cfg.only != "" {
		fmt.Print(r.markdown())
		return nil
	}
	if err := os.MkdirAll(cfg.out, 0o750); err != nil {
		return err
	}
	return r.write(cfg.out)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
