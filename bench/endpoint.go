package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/treatyhq/treaty/internal/profile"
)

// servers are the three bundle endpoints compared: treaty, SPIRE and the
// bare Go server returning treaty's bytes.
type servers struct {
	treaty, treatyWeb, spire *proc
	bare                     *bareServer
	body                     []byte
	etag                     string
}

func (h *harness) startServers(ctx context.Context) (*servers, error) {
	pki, err := newWebPKI(h.dir("pki"))
	if err != nil {
		return nil, err
	}
	s := &servers{}
	if s.treaty, err = h.startTreaty(ctx, "alpha.test", treatyOpts{}); err != nil {
		return s, err
	}
	if s.treatyWeb, err = h.startTreaty(ctx, "web.test", treatyOpts{profile: string(profile.HTTPSWeb), certFile: pki.certFile, keyFile: pki.keyFile}); err != nil {
		return s, err
	}
	if s.spire, err = h.startSPIRE(ctx, "beta.test", nil); err != nil {
		return s, err
	}
	for _, p := range []*proc{s.treaty, s.treatyWeb, s.spire} {
		if _, err := waitReady(ctx, "https://"+p.addr, 60*time.Second); err != nil {
			return s, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if s.body, s.etag, err = get(ctx, "https://"+s.treaty.addr); err != nil {
		return s, err
	}
	s.bare, err = h.startBare(ctx, s.body, pki)
	return s, err
}

func (s *servers) stop() {
	for _, p := range []*proc{s.treaty, s.treatyWeb, s.spire} {
		p.stop()
	}
	if s.bare != nil {
		s.bare.stop()
	}
}

// withServers runs fn with the three servers up, then stops them.
func (h *harness) withServers(ctx context.Context, fn func(*servers) error) error {
	s, err := h.startServers(ctx)
	defer s.stop() //nolint:contextcheck // stopping must work after ctx is cancelled
	if err != nil {
		return err
	}
	return fn(s)
}

func (h *harness) throughput(ctx context.Context) error {
	return h.withServers(ctx, func(s *servers) error {
		sec := h.res.section("1. Bundle endpoint GET throughput (16 keep-alive connections)",
			"server", "requests/s", "p50", "p99", "errors", "server CPU/request")
		sec.Note = fmt.Sprintf("%s per server in five interleaved slices, HTTP/1.1 keep-alive, the same %d-byte bundle. treaty and SPIRE use https_spiffe; the bare server is Go net/http with a P-256 certificate returning the bytes from memory. Server CPU/request is the server process's CPU time during its slices per request answered.", h.cfg.duration, len(s.body))
		targets := s.targets()
		res, err := interleaved(ctx, targets, loadOpts{conns: 16, duration: h.cfg.duration})
		if err != nil {
			return err
		}
		for _, t := range targets {
			r := res[t.name]
			sec.Data[t.name] = r
			sec.row(t.name, fmt.Sprintf("%.0f", r.PerSecond), ms(r.P50), ms(r.P99), fmt.Sprint(r.Errors), micros(r.ServerCPUPerRequest))
			logf("   %s: %.0f req/s, %s server CPU/request", t.name, r.PerSecond, micros(r.ServerCPUPerRequest))
		}
		vsSPIRE, vsBare := res["treaty"].PerSecond/res["SPIRE"].PerSecond, res["treaty"].PerSecond/res[bareName].PerSecond
		sec.check("treaty ≥ 3× SPIRE", vsSPIRE, "%.2f×", vsSPIRE >= 3)
		sec.check("treaty ≥ 0.9× bare", vsBare, "%.2f×", vsBare >= 0.9)
		cpuVsBare(sec, res)
		return nil
	})
}

// bareName names the bare server in the keep-alive sections.
const bareName = "bare Go HTTPS"

// targets are the three servers of the keep-alive sections, the bare one
// last.
func (s *servers) targets() []target {
	return []target{
		{name: "treaty", url: "https://" + s.treaty.addr, proc: s.treaty},
		{name: "SPIRE", url: "https://" + s.spire.addr, proc: s.spire},
		{name: bareName, url: "https://" + s.bare.addr, proc: s.bare.proc},
	}
}

// cpuVsBare checks treaty's server CPU per request against the bare
// server's, the cost of each request without the load generator's share.
func cpuVsBare(sec *section, res map[string]loadResult) {
	ratio := float64(res["treaty"].ServerCPUPerRequest) / float64(res[bareName].ServerCPUPerRequest)
	sec.check("treaty server CPU/request vs bare (no target)", ratio, "%.2f×", true)
}

func (h *harness) handshakes(ctx context.Context) error {
	return h.withServers(ctx, func(s *servers) error {
		sec := h.res.section("2. New TLS handshakes per second (a new connection per request, 16 workers)",
			"server", "profile", "handshakes/s", "p50", "p99")
		d := h.cfg.duration / 2
		sec.Note = fmt.Sprintf("%s per server in five interleaved slices; every key is EC P-256.", d)
		rates := map[string]float64{}
		targets := []target{{name: "treaty https_spiffe", url: "https://" + s.treaty.addr}, {name: "treaty https_web", url: "https://" + s.treatyWeb.addr},
			{name: "SPIRE https_spiffe", url: "https://" + s.spire.addr}, {name: "bare Go HTTPS web certificate", url: "https://" + s.bare.addr}}
		res, err := interleaved(ctx, targets, loadOpts{conns: 16, duration: d, newConn: true})
		if err != nil {
			return err
		}
		for _, t := range targets {
			r := res[t.name]
			server, profile, _ := strings.Cut(t.name, " ")
			if strings.HasPrefix(t.name, "bare") {
				server, profile = "bare Go HTTPS", "web certificate"
			}
			rates[t.name] = r.PerSecond
			sec.Data[t.name] = r
			sec.row(server, profile, fmt.Sprintf("%.0f", r.PerSecond), ms(r.P50), ms(r.P99))
			logf("   %s: %.0f handshakes/s", t.name, r.PerSecond)
		}
		bare := rates["bare Go HTTPS web certificate"]
		for _, k := range []string{"treaty https_spiffe", "treaty https_web"} {
			ratio := rates[k] / bare
			sec.check(k+" ≥ 0.9× bare", ratio, "%.2f×", ratio >= 0.9)
		}
		ratio := rates["treaty https_spiffe"] / rates["SPIRE https_spiffe"]
		sec.check("treaty https_spiffe vs SPIRE (no target)", ratio, "%.2f×", true)
		return nil
	})
}

func (h *harness) conditional(ctx context.Context) error {
	return h.withServers(ctx, func(s *servers) error {
		sec := h.res.section("3. Conditional GET (If-None-Match, 16 keep-alive connections)",
			"server", "requests/s", "304 answers", "p50", "p99", "server CPU/request")
		d := h.cfg.duration / 2
		sec.Note = fmt.Sprintf("%s per server in five interleaved slices. SPIRE sends no ETag, so it answers every request with the full bundle. treaty's 304 carries ETag and Cache-Control (RFC 9110, section 15.4.5); the bare server's carries neither. What is left of the gap to bare is that difference: in net/http, a handler that sets any header has the header map copied when the status is written, and the 304's two headers cost that copy and about six allocations (about 2 µs of server CPU and more GC per request, by profile); treaty's write and idle timeouts add two clock reads and a few timer updates per request. Dropping the headers would break conditional GET for caches and clients (RFC 9110), and dropping the timeouts would weaken the endpoint against slow clients, so both stay.", d)
		targets := s.targets()
		for i := range targets {
			targets[i].ifNoneMatch = s.etag
		}
		targets[len(targets)-1].ifNoneMatch = bareETag
		res, err := interleaved(ctx, targets, loadOpts{conns: 16, duration: d})
		if err != nil {
			return err
		}
		for _, t := range targets {
			r := res[t.name]
			sec.Data[t.name] = r
			sec.row(t.name, fmt.Sprintf("%.0f", r.PerSecond), fmt.Sprint(r.NotChanged), ms(r.P50), ms(r.P99), micros(r.ServerCPUPerRequest))
		}
		sec.check("treaty vs bare (no target)", res["treaty"].PerSecond/res[bareName].PerSecond, "%.2f×", true)
		sec.check("treaty vs SPIRE (no target)", res["treaty"].PerSecond/res["SPIRE"].PerSecond, "%.2f×", true)
		cpuVsBare(sec, res)
		return nil
	})
}

// footprint measures exec-to-serving time and idle memory.
func (h *harness) footprint(ctx context.Context) error {
	sec := h.res.section("6. Footprint: start-up time and idle memory", "server", "exec → bundle endpoint answers", "idle RSS")
	sec.Note = "Fresh data directories. RSS is read from /proc 5 s after the endpoint first answered."
	type fp struct {
		start time.Duration
		rss   int
	}
	got := map[string]fp{}
	for _, name := range []string{"treaty", "SPIRE"} {
		var p *proc
		var err error
		if name == "treaty" {
			p, err = h.startTreaty(ctx, "footprint.test", treatyOpts{})
		} else {
			p, err = h.startSPIRE(ctx, "footprint.test", nil)
		}
		if err != nil {
			return err
		}
		ready, err := waitReady(ctx, "https://"+p.addr, 60*time.Second)
		if err != nil {
			p.stop()
			return err
		}
		time.Sleep(5 * time.Second) // idle, by definition of the measurement
		rss, err := p.rssKB()
		p.stop()
		if err != nil {
			return err
		}
		got[name] = fp{ready.Sub(p.started), rss}
		sec.Data[name] = map[string]any{"start_ns": ready.Sub(p.started), "rss_kb": rss}
		sec.row(name, ms(ready.Sub(p.started)), fmt.Sprintf("%.1f MiB", float64(rss)/1024))
	}
	rss := float64(got["treaty"].rss) / float64(got["SPIRE"].rss)
	start := float64(got["treaty"].start) / float64(got["SPIRE"].start)
	sec.check("treaty RSS ≤ 1/3 of SPIRE's", rss, "%.2f×", rss <= 1.0/3)
	sec.check("treaty start ≤ 1/2 of SPIRE's", start, "%.2f×", start <= 0.5)
	return nil
}
