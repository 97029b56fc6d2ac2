package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// loadResult is one load run.
type loadResult struct {
	Requests   int           `json:"requests"`
	Errors     int           `json:"errors"`
	Seconds    float64       `json:"seconds"`
	PerSecond  float64       `json:"per_second"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	NotChanged int           `json:"not_modified"`
	// ServerCPU is the CPU time the server's process used during the
	// run, when known; ServerCPUPerRequest divides it by Requests. It
	// depends much less than requests per second on what else the
	// machine runs at that moment.
	ServerCPU           time.Duration `json:"server_cpu_ns,omitempty"`
	ServerCPUPerRequest time.Duration `json:"server_cpu_per_request_ns,omitempty"`
}

// loadOpts shape a load run.
type loadOpts struct {
	url         string
	conns       int
	duration    time.Duration
	newConn     bool   // a new TCP+TLS connection per request
	ifNoneMatch string // send If-None-Match
}

// loadRaw hammers url with conns workers for duration and returns the
// run's figures and every latency, sorted. TLS verification is
// off in the load generator, equally for every server measured: the client
// side of the handshake is not what is being measured.
func loadRaw(ctx context.Context, o loadOpts) (loadResult, []time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	var res loadResult
	var wg sync.WaitGroup
	start := time.Now()
	for range o.conns {
		wg.Go(func() {
			lat, errs, notMod := worker(ctx, o)
			mu.Lock()
			all = append(all, lat...)
			res.Errors += errs
			res.NotChanged += notMod
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Requests = len(all)
	if res.Requests == 0 {
		return res, nil, fmt.Errorf("no request to %s succeeded (%d errors)", o.url, res.Errors)
	}
	res.PerSecond = float64(res.Requests) / res.Seconds
	slices.Sort(all)
	res.P50, res.P99 = all[len(all)/2], all[len(all)*99/100]
	return res, all, nil
}

func worker(ctx context.Context, o loadOpts) (lat []time.Duration, errs, notMod int) {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},                  //nolint:gosec // load generator; see load's doc
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1: one request per connection at a time
		DisableKeepAlives:   o.newConn,
		MaxIdleConnsPerHost: 1,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url, nil)
		if err != nil {
			return lat, errs + 1, notMod
		}
		if o.ifNoneMatch != "" {
			req.Header.Set("If-None-Match", o.ifNoneMatch)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				errs++
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusNotModified:
			notMod++
		default:
			errs++
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, errs, notMod
}

// target is one server under load: its process, when set, is measured for
// CPU time, and ifNoneMatch, when set, replaces loadOpts's.
type target struct {
	name, url   string
	proc        *proc
	ifNoneMatch string
}

// rounds is how many slices each load run is cut into. The servers take
// turns slice by slice, so a burst of noise on the shared machine hits
// them all alike instead of whichever ran at that moment.
const rounds = 5

// interleaved loads every target for o.duration in all, in turns, and
// merges each target's slices.
func interleaved(ctx context.Context, targets []target, o loadOpts) (map[string]loadResult, error) {
	lat := map[string][]time.Duration{}
	out := map[string]loadResult{}
	slice := o.duration / rounds
	for range rounds {
		for _, t := range targets {
			o := o
			o.url, o.duration = t.url, slice
			if t.ifNoneMatch != "" {
				o.ifNoneMatch = t.ifNoneMatch
			}
			cpu0, err := t.cpuTime()
			if err != nil {
				return nil, err
			}
			r, all, err := loadRaw(ctx, o)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			cpu1, err := t.cpuTime()
			if err != nil {
				return nil, err
			}
			acc := out[t.name]
			acc.Requests += r.Requests
			acc.Errors += r.Errors
			acc.NotChanged += r.NotChanged
			acc.Seconds += r.Seconds
			acc.ServerCPU += cpu1 - cpu0
			out[t.name] = acc
			lat[t.name] = append(lat[t.name], all...)
		}
	}
	for name, acc := range out {
		all := lat[name]
		slices.Sort(all)
		acc.PerSecond = float64(acc.Requests) / acc.Seconds
		acc.P50, acc.P99 = all[len(all)/2], all[len(all)*99/100]
		acc.ServerCPUPerRequest = acc.ServerCPU / time.Duration(acc.Requests)
		out[name] = acc
	}
	return out, nil
}

// cpuTime is the CPU time t's process has used, or 0 without a process.
func (t target) cpuTime() (time.Duration, error) {
	if t.proc == nil {
		return 0, nil
	}
	cpu, err := t.proc.cpuTime()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", t.name, err)
	}
	return cpu, nil
}

// micros formats a duration in microseconds.
func micros(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// get fetches url once (no verification) and returns the body and ETag.
func get(ctx context.Context, url string) ([]byte, string, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // readiness probe of a loopback server
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, resp.Header.Get("ETag"), err
}

// waitReady polls url until it answers 200, for at most limit.
func waitReady(ctx context.Context, url string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		if _, _, err := get(ctx, url); err == nil {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s did not answer within %s", url, limit)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// bareServer is the practical limit: Go's net/http over TLS returning
// fixed bytes from memory, with the same key type as the servers measured.
// It runs in a process of its own, like the servers it is compared with.
type bareServer struct {
	addr string
	proc *proc
}

// bareETag is the bare server's entity tag.
const bareETag = `"bare"`

// quietLog drops the handshake errors that load runs end with.
var quietLog = log.New(io.Discard, "", 0)

func (h *harness) startBare(ctx context.Context, body []byte, pki *webPKI) (*bareServer, error) {
	d := h.dir("bare")
	port, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for name, data := range map[string][]byte{"body": body, "addr": []byte(addr)} {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(pki.certFile), f))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(d, f), data, 0o600); err != nil { //nolint:gosec // f is one of two constant names
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b := &bareServer{addr: addr, proc: &proc{name: "bare", addr: addr}}
	if err := h.start(ctx, b.proc, d, nil, self, "-bare-serve", d); err != nil {
		return nil, err
	}
	_, err = waitReady(ctx, "https://"+addr, 30*time.Second)
	return b, err
}

func (b *bareServer) stop() { b.proc.stop() }

// serveBare is the bare server's process: dir holds body, addr, cert.pem
// and key.pem.
func serveBare(ctx context.Context, dir string) error {
	body, err := os.ReadFile(filepath.Join(dir, "body"))
	if err != nil {
		return err
	}
	addr, err := os.ReadFile(filepath.Join(dir, "addr"))
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == bareETag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", bareETag)
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: string(addr), Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quietLog,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
