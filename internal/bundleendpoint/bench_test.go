package bundleendpoint

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
)

// BenchmarkServe measures the handler alone: what treaty adds on top of
// net/http and TLS for each request.
func BenchmarkServe(b *testing.B) {
	for _, bc := range []struct {
		name        string
		ifNoneMatch bool
		observe     func(int, time.Duration)
		limiter     *limiter
	}{
		{"get", false, nil, nil},
		{"conditional", true, nil, nil},
		{"get/observed", false, func(int, time.Duration) {}, nil},
		{"get/rate limited", false, nil, newLimiter(1e12, time.Now)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := &handler{observe: bc.observe, limiter: bc.limiter}
			h.current.Store(newResponse([]byte(`{"keys":[]}`), 1))
			req := httptest.NewRequestWithContext(b.Context(), http.MethodGet, "/", nil)
			if bc.ifNoneMatch {
				req.Header.Set("If-None-Match", h.current.Load().etag)
			}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}

// BenchmarkIdleConnection measures the memory an idle HTTP/2 connection
// holds: per connection, the heap and stacks in use after 256 clients have
// each sent the preface, SETTINGS and a PING, and optionally one ignored
// frame first (a client making the server read, and keep, a large frame
// buffer). Server and client share the process, so the figure includes
// the client's side of TLS (a few KB). Run it with
//
//	go test -run '^$' -bench IdleConnection -benchtime 3x ./internal/bundleendpoint/
//
// Measured (Go 1.26, amd64): about 40 KB idle and 60-65 KB after a 16 KiB
// frame. With net/http's HTTP/2 defaults a 1 MiB frame, which the endpoint
// now refuses, left a connection holding 1.09 MB.
func BenchmarkIdleConnection(b *testing.B) {
	for _, frame := range []int{0, http2MaxReadFrameSize} {
		b.Run(fmt.Sprintf("frame=%d", frame), func(b *testing.B) {
			c := newCA(b)
			_, url := serve(b, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c,
				MaxConnsPerClient: 1024, MaxConns: 1024})
			var total float64
			for b.Loop() {
				total += idleConnBytes(b, addrOf(url), 256, frame)
			}
			b.ReportMetric(total/float64(b.N), "B/conn")
		})
	}
}

func idleConnBytes(b *testing.B, addr string, n, frame int) float64 {
	before := memInUse()
	conns := make([]*h2Conn, n)
	for i := range conns {
		conns[i] = dialH2(b, addr)
		if frame > 0 {
			conns[i].write(b, h2Frame(frameUnknown, 0, 0, make([]byte, frame)))
		}
		require.NoError(b, conns[i].ping(b))
	}
	used := float64(memInUse()-before) / float64(n)
	for _, conn := range conns {
		// Wait for the server to close each one, so that the next round
		// starts from an idle server.
		closeAndWait(b, conn.Conn)
	}
	return used
}

func memInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// loadConns is the number of keep-alive connections BenchmarkKeepAlive
// drives each server with, as the bench harness does.
const loadConns = 16

// loadRounds is how many turns the servers take in BenchmarkKeepAlive.
const loadRounds = 5

// BenchmarkKeepAlive measures the endpoint under load as the bench harness
// does (16 HTTP/1.1 keep-alive connections over TLS on loopback, a new
// request each time), side by side with two servers of the same bytes and
// certificate:
//
//   - bare: the harness's bare server (bench/load.go, serveBare), net/http
//     with only a header timeout, its 304 carrying no header;
//   - handler: our handler on that same bare server, so that
//     handler/bare is the cost of the response the endpoint must send
//     (ETag and Cache-Control on 304 too, RFC 9110, section 15.4.5) and
//     treaty/handler the cost of the server around it (timeouts,
//     connection caps, TLS settings).
//
// The servers take turns, the same number of requests each, so that noise
// on a shared machine hits them alike. Each reports its requests per
// second and the process's CPU time per request during its turns: the
// client's share is the same for all, so differences are the servers',
// and other processes on the machine do not count. The servers' goroutines
// carry the pprof label "server", so that one profile can be split:
//
//	go test -run '^$' -bench KeepAlive -benchtime 100000x -cpuprofile cpu.out ./internal/bundleendpoint/
//	go tool pprof -tagfocus server=treaty cpu.out
func BenchmarkKeepAlive(b *testing.B) {
	for _, conditional := range []bool{false, true} {
		name := "get"
		if conditional {
			name = "conditional"
		}
		b.Run(name, func(b *testing.B) {
			targets := loadTargets(b, conditional)
			perConn := max(b.N/loadRounds/loadConns, 1)
			b.ResetTimer()
			for range loadRounds {
				for _, t := range targets {
					t.run(b, perConn)
				}
			}
			b.StopTimer()
			n := loadRounds * loadConns * perConn
			for _, t := range targets {
				b.ReportMetric(t.rate(n), t.name+"-req/s")
				b.ReportMetric(t.cost(n), t.name+"-cpu-µs/req")
			}
			treaty, handler, bare := targets[0], targets[1], targets[2]
			b.ReportMetric(treaty.rate(n)/bare.rate(n), "treaty/bare-req/s")
			b.ReportMetric(treaty.cost(n)/bare.cost(n), "treaty/bare-cpu")
			b.ReportMetric(handler.cost(n)/bare.cost(n), "handler/bare-cpu")
			b.ReportMetric(treaty.cost(n)/handler.cost(n), "treaty/handler-cpu")
		})
	}
}

// loadTarget is one server under load and its clients, each holding one
// keep-alive connection.
type loadTarget struct {
	name        string
	url         string
	ifNoneMatch string
	want        int // status code
	clients     []*http.Client
	elapsed     time.Duration // in run
	cpu         time.Duration // the process's, in run
}

// loadTargets starts treaty (https_spiffe), our handler on the bare server
// and the bare server, and connects the clients.
func loadTargets(b *testing.B, conditional bool) []*loadTarget {
	c := newCA(b)
	var s *Server
	var treatyURL, handlerURL, bareURL string
	labelled(b, "treaty", func() {
		s, treatyURL = serve(b, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c})
	})
	cert := *s.svid.current.Load()
	doc, seq := c.Document()
	labelled(b, "handler", func() {
		h := &handler{}
		h.current.Store(newResponse(doc, seq))
		handlerURL = serveBare(b, cert, h)
	})
	labelled(b, "bare", func() { bareURL = serveBare(b, cert, bareHandler(doc)) })
	etag := s.handler.current.Load().etag
	targets := []*loadTarget{
		{name: "treaty", url: treatyURL, ifNoneMatch: etag},
		{name: "handler", url: handlerURL, ifNoneMatch: etag},
		{name: "bare", url: bareURL, ifNoneMatch: bareETag},
	}
	for _, t := range targets {
		t.want = http.StatusNotModified
		if !conditional {
			t.ifNoneMatch, t.want = "", http.StatusOK
		}
		t.clients = make([]*http.Client, loadConns)
		for i := range t.clients {
			t.clients[i] = loadClient(b)
			require.NoError(b, t.get(b.Context(), t.clients[i]), "warming %s", t.name)
		}
	}
	return targets
}

// labelled runs start with the pprof label server=name on this goroutine,
// so that the goroutines it starts, the server's, carry it.
func labelled(b *testing.B, name string, start func()) {
	pprof.SetGoroutineLabels(pprof.WithLabels(b.Context(), pprof.Labels("server", name)))
	defer pprof.SetGoroutineLabels(b.Context())
	start()
}

// loadClient is an HTTP/1.1 client with one keep-alive connection, like
// the bench harness's.
func loadClient(b *testing.B) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},                  //nolint:gosec // the load, not the client's checks, is measured
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1
		MaxIdleConnsPerHost: 1,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// run sends n requests on each connection at once and adds the time and
// the process's CPU time they took.
func (t *loadTarget) run(b *testing.B, n int) {
	var wg sync.WaitGroup
	cpu0, start := processCPU(b), time.Now()
	pprof.Do(b.Context(), pprof.Labels("client", t.name), func(ctx context.Context) {
		for _, client := range t.clients {
			wg.Go(func() {
				for range n {
					if err := t.get(ctx, client); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
	t.elapsed += time.Since(start)
	t.cpu += processCPU(b) - cpu0
}

// rate is the requests per second of n requests.
func (t *loadTarget) rate(n int) float64 { return float64(n) / t.elapsed.Seconds() }

// cost is the CPU time, in microseconds, per request of n.
func (t *loadTarget) cost(n int) float64 { return float64(t.cpu.Microseconds()) / float64(n) }

func (t *loadTarget) get(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	if t.ifNoneMatch != "" {
		req.Header.Set("If-None-Match", t.ifNoneMatch)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != t.want {
		return fmt.Errorf("%s: %s, want %d", t.name, resp.Status, t.want)
	}
	return nil
}

// processCPU is the CPU time, user and system, this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bareETag is the bare server's entity tag.
const bareETag = `"bare"`

// bareHandler is the bench harness's bare handler (bench/load.go,
// serveBare): body from memory, a 304 with no header.
func bareHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == bareETag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", bareETag)
		_, _ = w.Write(body)
	})
}

// serveBare serves h over TLS with cert as the bench harness's bare server
// does: net/http with a header timeout and nothing else.
func serveBare(b *testing.B, cert tls.Certificate, h http.Handler) string {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	var lc net.ListenConfig
	l, err := lc.Listen(b.Context(), "tcp", "127.0.0.1:0")
	require.NoError(b, err)
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	b.Cleanup(func() {
		_ = srv.Close()
		require.ErrorIs(b, <-done, http.ErrServerClosed)
	})
	return "https://" + l.Addr().String() + "/"
}
