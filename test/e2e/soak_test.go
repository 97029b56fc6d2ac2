package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/testpki"
)

// The soak tests run with TREATY_SOAK set. TREATY_SOAK=1 (make soak) is
// the long soak, minutes per test, whose counts go to bench/soak.json
// (make bench folds them into bench/RESULTS.md); TREATY_SOAK=short (make
// soak SOAK=short, run by CI) does tens of rounds, well under a minute
// per test, and reports nothing.

// soakMode returns the soak mode, skipping the test when soaks are off.
func soakMode(t *testing.T) string {
	t.Helper()
	mode := os.Getenv("TREATY_SOAK")
	switch mode {
	case "":
		t.Skip("soak test: run with make soak (TREATY_SOAK=1), or make soak SOAK=short")
	case "short", "1":
	default:
		t.Fatalf("TREATY_SOAK=%q: want 1 (long) or short", mode)
	}
	return mode
}

// soakCount is the long soak's count, overridable by the environment
// variable name, or short in the short soak.
func soakCount(mode, name string, long, short int) int {
	if mode == "short" {
		return short
	}
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return long
}

// soakReport accumulates the counts the soak tests report.
var soakReport = struct {
	sync.Mutex
	m map[string]any
}{m: map[string]any{}}

// report records a count of the long soak in bench/soak.json; the short
// soak measures too little to publish.
func report(mode, key string, value any) {
	if mode != "1" {
		return
	}
	soakReport.Lock()
	defer soakReport.Unlock()
	soakReport.m[key] = value
	soakReport.m["date"] = time.Now().UTC().Format(time.RFC3339)
	data, _ := json.MarshalIndent(soakReport.m, "", "  ")
	_ = os.WriteFile(filepath.Join(repoRoot(), "bench", "soak.json"), append(data, '\n'), 0o644) //nolint:gosec // a public report
}

// TestSoakCrash kills the server with SIGKILL hundreds of times during
// rotations, federated bundle writes and entry writes, and checks after
// every restart that what was acknowledged before the kill is there.
func TestSoakCrash(t *testing.T) {
	mode := soakMode(t)
	rounds := soakCount(mode, "TREATY_SOAK_ROUNDS", 200, 30)
	s := newServer(t, "alpha.test", "")
	partnerDoc := partnerBundleFile(t)
	l := newLedger()
	for round := range rounds {
		s.start()
		l.verify(t, s, round)
		require.Regexp(t, `^\d+ registration entr(y|ies)\n$`, s.treaty("entry", "count"), "round %d: entries readable", round)
		crashDuringChurn(t, s, l, func(stop <-chan struct{}) { churnWithEntries(s, partnerDoc, round, l, stop) })
	}
	s.start()
	l.verify(t, s, rounds)
	require.GreaterOrEqual(t, l.acks, rounds, "every round acknowledged a write before its kill")
	report(mode, "crash", map[string]any{"kills": rounds, "restarts_survived": rounds, "acknowledged_writes": l.acks, "highest_sequence": l.maxSeq})
}

// churnWithEntries runs churn and, beside it, creates entries and deletes
// every other one, recording in l what the server acknowledges.
func churnWithEntries(s *server, partnerDoc string, round int, l *ledger, stop <-chan struct{}) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		churn(s, partnerDoc, l, stop)
	}()
	defer func() { <-done }()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("spiffe://alpha.test/soak/%d/%d", round, i)
		out, _, err := s.treatyErr("entry", "create", "-spiffeID", id, "-selector", "unix:uid:"+strconv.Itoa(10000+i))
		m := entryIDRe.FindStringSubmatch(out)
		if err != nil || m == nil {
			continue
		}
		l.created(m[1])
		if i%2 == 0 {
			l.deleting(m[1])
			_, _, _ = s.treatyErr("entry", "delete", "-entryID", m[1])
		}
	}
}

// TestSoakBadPartner federates with a partner that flaps, serves garbage,
// rolls back and tarpits, while a workload holds its streams, and checks
// that the last good bundle is always served and that neither goroutines
// nor memory grow.
func TestSoakBadPartner(t *testing.T) {
	mode := soakMode(t)
	duration := time.Duration(soakCount(mode, "TREATY_SOAK_SECONDS", 120, 20)) * time.Second
	warmUp := 10 * time.Second
	if mode == "short" {
		warmUp = 2 * time.Second
	}
	cert, caFile := selfSignedPair(t)
	partner := newFlakyPartner(t, cert)
	telemetry := freePort(t)
	s := newServer(t, "alpha.test", fmt.Sprintf("federation:\n  min_refresh: 1s\n  ca_file: %s\ntelemetry:\n  address: %s\n", caFile, telemetry))
	s.start()
	s.treaty("federation", "create", "-trustDomain", "flaky.test", "-bundleEndpointURL", partner.url, "-bundleEndpointProfile", "https_web")
	s.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/soak", "-selector", uidSelector, "-federatesWith", "flaky.test")
	source, err := workloadapi.NewX509Source(t.Context(), workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+s.workload)))
	require.NoError(t, err)
	defer source.Close()
	flaky := spiffeid.RequireTrustDomainFromString("flaky.test")
	waitFor(t, func() bool { _, err := source.GetX509BundleForTrustDomain(flaky); return err == nil }, "the first good bundle")

	time.Sleep(warmUp) // let the server settle before the baseline
	g0, m0 := scrape(t, telemetry)
	deadline, limit := time.Now().Add(duration), time.Now().Add(duration+3*time.Minute)
	checks := 0
	var lastSeq uint64
	// Run for the duration and until the partner has served every fault
	// at least once, however slow the machine.
	for time.Now().Before(deadline) || partner.requests.Load() < faultCycle+1 {
		require.True(t, time.Now().Before(limit), "the partner served %d requests in %s", partner.requests.Load(), duration+3*time.Minute)
		st := federationStatus(t, s, "flaky.test")
		require.GreaterOrEqual(t, st.Sequence, lastSeq, "the held sequence went backwards")
		lastSeq = st.Sequence
		_, err := source.GetX509BundleForTrustDomain(flaky)
		require.NoError(t, err, "the workload lost the partner's bundle")
		checks += 2
		time.Sleep(500 * time.Millisecond)
	}
	g1, m1 := scrape(t, telemetry)
	require.Less(t, g1, g0+20, "goroutines grew from %.0f to %.0f", g0, g1)
	require.Less(t, m1, m0*1.5+16<<20, "RSS grew from %.0f to %.0f bytes", m0, m1)
	report(mode, "bad_partner", map[string]any{
		"seconds": duration.Seconds(), "partner_requests": partner.requests.Load(), "faults_served": partner.faults.Load(),
		"invariants_checked": checks, "goroutines_before": g0, "goroutines_after": g1, "rss_before": m0, "rss_after": m1,
		"good_sequence_reached": lastSeq,
	})
}

// faultCycle is the number of requests after which the flaky partner
// repeats its faults.
const faultCycle = 6

// flakyPartner is an https_web bundle endpoint that misbehaves on purpose:
// good bundles with rising sequence, garbage, a rollback, a tarpit, a
// dropped connection, in turn.
type flakyPartner struct {
	url              string
	requests, faults atomic.Int64
}

func newFlakyPartner(t *testing.T, cert tls.Certificate) *flakyPartner {
	p := &flakyPartner{}
	ca := testpki.CACertValid(t, "spiffe://flaky.test", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	var seq atomic.Uint64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.requests.Add(1)
		switch n % faultCycle {
		case 1:
			p.faults.Add(1)
			_, _ = w.Write([]byte("<html>maintenance</html>"))
		case 2:
			p.faults.Add(1)
			_, _ = w.Write(bundleDoc(t, "flaky.test", ca, 0)) // a rollback
		case 3:
			p.faults.Add(1)
			select { // a tarpit: hold the request until the client gives up
			case <-r.Context().Done():
			case <-time.After(40 * time.Second):
			}
		case 4:
			p.faults.Add(1)
			if hj, ok := w.(http.Hijacker); ok {
				conn, _, _ := hj.Hijack()
				_ = conn.Close()
			}
		default:
			_, _ = w.Write(bundleDoc(t, "flaky.test", ca, seq.Add(1)+1))
		}
	})
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}} // HTTP/1.1, so hijacking works
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	p.url = "https://" + l.Addr().String()
	return p
}

// scrape reads go_goroutines and process_resident_memory_bytes.
func scrape(t *testing.T, addr string) (goroutines, rss float64) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body strings.Builder
	_, err = io.Copy(&body, resp.Body)
	require.NoError(t, err)
	for line := range strings.SplitSeq(body.String(), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			goroutines = v
		case "process_resident_memory_bytes":
			rss = v
		}
	}
	return goroutines, rss
}

// TestSoakDiskFull runs the server on a tiny tmpfs, fills it, and checks
// that writes fail with a clear error, nothing is corrupted, and the
// server recovers when space returns.
func TestSoakDiskFull(t *testing.T) {
	mode := soakMode(t)
	mnt := t.TempDir()
	if out, err := exec.CommandContext(t.Context(), "mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		if strict {
			t.Fatalf("cannot mount a tmpfs to fill (TREATY_E2E=1; needs root): %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.CommandContext(context.Background(), "umount", mnt).Run() })
	s := newServer(t, "alpha.test", "")
	s.dataDir = filepath.Join(mnt, "data")
	yaml, err := os.ReadFile(s.config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(s.config, []byte(regexp.MustCompile(`(?m)^data_dir: .*$`).ReplaceAllString(string(yaml), "data_dir: "+s.dataDir)), 0o600))
	s.start()
	seq0 := sequence(t, parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe")))

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	_, _ = f.ReadFrom(io.LimitReader(zeros{}, 64<<20)) // until the disk is full
	_ = f.Close()
	failures := 0
	for range 5 {
		_, stderr, err := s.treatyErr("localauthority", "x509", "prepare")
		if err != nil {
			failures++
			require.Contains(t, strings.ToLower(stderr), "full", "the error says the disk is full: %s", stderr)
		}
		_, stderr, err = s.treatyErr("entry", "create", "-spiffeID", "spiffe://alpha.test/full", "-selector", "unix:uid:1")
		if err != nil {
			failures++
			require.Contains(t, strings.ToLower(stderr), "full", "the error says the disk is full: %s", stderr)
		}
	}
	require.Positive(t, failures, "writes on a full disk should fail")
	s.treaty("bundle", "show") // reads still work
	require.NoError(t, os.Remove(filler))
	s.kill()
	s.start()
	require.GreaterOrEqual(t, sequence(t, parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))), seq0)
	checkActiveIsPublished(t, s)
	s.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/after", "-selector", "unix:uid:2")
	report(mode, "disk_full", map[string]any{"failed_writes_reported": failures, "recovered": true})
}

var entryIDRe = regexp.MustCompile(`Entry ID\s+: (\S+)`)

// selfSignedPair returns a loopback server certificate and the file that
// trusts it.
func selfSignedPair(t *testing.T) (tls.Certificate, string) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	return cert, certFile
}

// bundleDoc is a SPIFFE bundle of td holding ca, with sequence seq.
func bundleDoc(t *testing.T, td string, ca *x509.Certificate, seq uint64) []byte {
	b := spiffebundle.New(spiffeid.RequireTrustDomainFromString(td))
	b.AddX509Authority(ca)
	b.SetSequenceNumber(seq)
	b.SetRefreshHint(time.Second)
	doc, err := bundle.Marshal(b)
	require.NoError(t, err)
	return doc
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
