package e2e

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/pgtest"
)

// replica is one treaty server of a trust domain whose replicas share a
// PostgreSQL database.
type replica struct {
	*server
	endpoint  string // bundle endpoint address
	telemetry string // /readyz
	agents    string // agent API address; "" without one
}

// replicaSet is a trust domain run by several replicas on one PostgreSQL.
type replicaSet struct {
	t        *testing.T
	db       *pgtest.Cluster
	replicas []*replica
}

// newReplicaSet starts PostgreSQL and n replicas of alpha.test on it, each
// with its own data directory, bundle endpoint and telemetry address, all
// with the same seal key.
func newReplicaSet(t *testing.T, n int) *replicaSet {
	t.Helper()
	return newReplicaSetWith(t, n, false)
}

// newReplicaSetWith is newReplicaSet, each replica serving the agent API
// on an address of its own when agents is true.
func newReplicaSetWith(t *testing.T, n int, agents bool) *replicaSet {
	t.Helper()
	c := pgtest.Start(t)
	dsn, err := c.CreateDatabase(t.Context())
	require.NoError(t, err)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "db-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(c.Password+"\n"), 0o600))
	sealFile := filepath.Join(dir, "seal.key")
	require.NoError(t, os.WriteFile(sealFile, []byte(hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))), 0o600))
	rs := &replicaSet{t: t, db: c}
	for range n {
		r := &replica{endpoint: freePort(t), telemetry: freePort(t)}
		agentAPI := ""
		if agents {
			r.agents = freePort(t)
			agentAPI = fmt.Sprintf("agent_api:\n  address: %s\n", r.agents)
		}
		r.server = newServer(t, "alpha.test", agentAPI+fmt.Sprintf(`bundle_endpoint:
  address: %s
  profile: https_spiffe
  refresh_hint: 10s
telemetry:
  address: %s
ca:
  key_seal_file: %s
federation:
  min_refresh: 1s
datastore:
  driver: postgres
  dsn: %s
  password_file: %s
`, r.endpoint, r.telemetry, sealFile, dsn, pwFile))
		r.start()
		rs.replicas = append(rs.replicas, r)
	}
	return rs
}

// insecure reads the endpoint as bytes: the test checks what is served,
// not who serves it (the profile's authentication has its own tests).
var insecure = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	DisableKeepAlives: true,
}}

// served is one answer of a bundle endpoint.
type served struct {
	body string
	etag string
	seq  uint64
}

func (r *replica) fetch(ctx context.Context) (served, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.endpoint+"/", nil)
	if err != nil {
		return served{}, err
	}
	resp, err := insecure.Do(req)
	if err != nil {
		return served{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return served{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return served{}, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("alpha.test"), body)
	if err != nil {
		return served{}, err
	}
	seq, _ := b.SequenceNumber()
	return served{body: string(body), etag: resp.Header.Get("ETag"), seq: seq}, nil
}

func (r *replica) mustFetch(t *testing.T) served {
	t.Helper()
	s, err := r.fetch(t.Context())
	require.NoError(t, err, "replica log:\n%s", r.log)
	return s
}

// readyz returns /readyz's status code and body.
func (r *replica) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.telemetry + "/readyz") //nolint:noctx // a short test request
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// partnerView fetches from every replica in turn, as a partner behind a
// load balancer would, until stop is closed, and fails the test if the
// sequence ever goes down from one answer to the next.
func (rs *replicaSet) partnerView(stop <-chan struct{}) (wait func() int) {
	var wg sync.WaitGroup
	var answers int
	var failure string
	wg.Go(func() {
		var last uint64
		var lastFrom int
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n := i % len(rs.replicas)
			got, err := rs.replicas[n].fetch(rs.t.Context())
			if err != nil {
				continue // a replica being killed; others answer
			}
			answers++
			if got.seq < last {
				failure = fmt.Sprintf("replica %d served sequence %d after replica %d served %d", n, got.seq, lastFrom, last)
				return
			}
			last, lastFrom = got.seq, n
		}
	})
	return func() int {
		wg.Wait()
		require.Empty(rs.t, failure)
		return answers
	}
}

// Three replicas share one trust domain: the same bundle bytes and ETag from
// each, a change made through any one served by all of them at once (a
// partner never sees the sequence go down, whichever replica it reaches),
// replicas that carry on when one is killed, and a PostgreSQL restart that
// they ride out, serving from memory and saying why on /readyz.
func TestReplicasShareOneTrustDomain(t *testing.T) {
	rs := newReplicaSet(t, 3)
	r0, r1, r2 := rs.replicas[0], rs.replicas[1], rs.replicas[2]

	first := r0.mustFetch(t)
	for _, r := range rs.replicas[1:] {
		got := r.mustFetch(t)
		require.Equal(t, first.body, got.body, "one authority, one bundle")
		require.Equal(t, first.etag, got.etag)
	}

	stop := make(chan struct{})
	wait := rs.partnerView(stop)

	// A change through one replica is served by the others as soon as the
	// command returns.
	r0.treaty("localauthority", "x509", "prepare")
	for _, r := range []*replica{r1, r2} {
		got := r.mustFetch(t)
		require.Equal(t, first.seq+1, got.seq, "the endpoint confirms against the database before answering")
	}
	waitFor(t, func() bool { return !strings.Contains(r2.treaty("localauthority", "x509", "show"), "No prepared") },
		"replica 2 hears of the prepared authority")

	// Entries written through one replica are there for all.
	r1.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/web", "-parentID", "spiffe://alpha.test/node", "-selector", "unix:uid:1000")
	require.Contains(t, r2.treaty("entry", "show", "-spiffeID", "spiffe://alpha.test/web"), "spiffe://alpha.test/web")

	// A replica killed mid-run: the others carry on, activating the
	// authority r0 prepared (with the key r0 made, sealed in the database)
	// and preparing the next.
	r0.kill()
	show := r1.treaty("localauthority", "x509", "show")
	_, prepared, _ := strings.Cut(show, "Prepared")
	_, prepared, _ = strings.Cut(prepared, "Authority ID:")
	prepared = strings.Fields(prepared)[0]
	r1.treaty("localauthority", "x509", "activate", "-authorityID", prepared)
	r2.treaty("localauthority", "x509", "prepare")
	got := r1.mustFetch(t)
	require.Equal(t, first.seq+2, got.seq)

	// PostgreSQL goes away: replicas keep serving the bundle they have,
	// /readyz says why, a write fails with a clear error; once it is back
	// they recover by themselves.
	require.NoError(t, rs.db.Kill())
	waitFor(t, func() bool {
		code, body := r1.readyz(t)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "datastore unreachable")
	}, "readyz reports the lost database")
	during := r2.mustFetch(t)
	require.Equal(t, got.body, during.body, "the last good bundle is served from memory")
	_, stderr, err := r1.treatyErr("entry", "create", "-spiffeID", "spiffe://alpha.test/db", "-parentID", "spiffe://alpha.test/node", "-selector", "unix:uid:1001")
	require.Error(t, err, "nothing is acknowledged that was not committed")
	require.Contains(t, stderr, "PostgreSQL")

	require.NoError(t, rs.db.Restart())
	waitFor(t, func() bool { code, _ := r1.readyz(t); return code == http.StatusOK }, "readyz recovers")
	r1.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/db", "-parentID", "spiffe://alpha.test/node", "-selector", "unix:uid:1001")
	require.Contains(t, r2.treaty("entry", "show", "-spiffeID", "spiffe://alpha.test/db"), "spiffe://alpha.test/db")

	close(stop)
	answers := wait()
	require.Positive(t, answers)
	t.Logf("partner view: %d answers, sequence never went down", answers)
}
