package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
)

// chaosKills is how many times TestReplicasRideOutChaos kills a replica.
const chaosKills = 50

// partnerOf is a partner trust domain served by one treaty on SQLite,
// counting the polls it answers.
type partnerOf struct {
	*server
	name      string
	endpoint  string
	telemetry string
}

func startPartner(t *testing.T, name string) *partnerOf {
	t.Helper()
	p := &partnerOf{name: name, endpoint: freePort(t), telemetry: freePort(t)}
	p.server = newServer(t, name, fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n  refresh_hint: 2s\nca:\n  ca_ttl: 24h\ntelemetry:\n  address: %s\n",
		p.endpoint, p.telemetry))
	p.start()
	return p
}

var requestsLine = regexp.MustCompile(`(?m)^treaty_bundle_endpoint_requests_total\{code="(\d+)"\} (\d+)$`)

// polls counts the bundle requests the partner answered.
func (p *partnerOf) polls(t *testing.T) int {
	t.Helper()
	body := httpGetBody(t, "http://"+p.telemetry+"/metrics")
	n := 0
	for _, m := range requestsLine.FindAllStringSubmatch(body, -1) {
		v, err := strconv.Atoi(m[2])
		require.NoError(t, err)
		n += v
	}
	return n
}

func httpGetBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := insecure.Get(url) //nolint:noctx // a short test request
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

// svidFrom fetches an X509-SVID from the replica's Workload API and
// checks it is valid now against the bundle the replica serves.
func (r *replica) svidFrom(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var x509ctx *workloadapi.X509Context
	var err error
	for ctx.Err() == nil {
		if x509ctx, err = workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+r.workload)); err == nil && len(x509ctx.SVIDs) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err, "replica log:\n%s", r.log)
	local, ok := x509ctx.Bundles.Get(spiffeid.RequireTrustDomainFromString("alpha.test"))
	require.True(t, ok)
	_, _, err = x509svid.Verify(x509ctx.SVIDs[0].Certificates, x509bundle.NewSet(local))
	require.NoError(t, err, "the SVID chains to the trust domain's bundle and is valid now")
}

// Three replicas, two partners: a random replica is killed (SIGKILL) and
// restarted chaosKills times, and PostgreSQL is killed and restarted half
// way, while the partners rotate their CAs and admin writes go to random
// replicas. No acknowledged write is lost, the sequence a partner sees
// never goes down, each partner is polled about once per interval by the
// three replicas together (not three times), and every restarted replica
// gives workloads a valid SVID.
func TestReplicasRideOutChaos(t *testing.T) {
	partners := []*partnerOf{startPartner(t, "beta.test"), startPartner(t, "gamma.test")}
	rs := newReplicaSet(t, 3)
	r0 := rs.replicas[0]
	for _, p := range partners {
		bundle := filepath.Join(t.TempDir(), p.name+".json")
		require.NoError(t, os.WriteFile(bundle, []byte(p.treaty("bundle", "show", "-format", "spiffe")), 0o600))
		r0.treaty("federation", "create", "-trustDomain", p.name, "-bundleEndpointURL", "https://"+p.endpoint,
			"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://"+p.name+"/spire/server",
			"-trustDomainBundlePath", bundle, "-trustDomainBundleFormat", "spiffe")
	}
	r0.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/chaos", "-parentID", "spiffe://alpha.test/node",
		"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()), "-federatesWith", "beta.test", "-federatesWith", "gamma.test")
	for _, r := range rs.replicas {
		r.svidFrom(t)
	}

	// Writers and the partner view run until the kills are done.
	stop := make(chan struct{})
	wait := rs.partnerView(stop)
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			id := fmt.Sprintf("spiffe://alpha.test/w/%d", i)
			r := rs.replicas[rand.IntN(len(rs.replicas))]
			if _, _, err := r.treatyErr("entry", "create", "-spiffeID", id, "-parentID", "spiffe://alpha.test/node", "-selector", "unix:uid:4242"); err == nil {
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Second):
			}
			for _, p := range partners {
				_, _, _ = p.treatyErr("localauthority", "x509", "prepare") // fails harmlessly while one is prepared
			}
		}
	})

	startPolls := []int{partners[0].polls(t), partners[1].polls(t)}
	start := time.Now()
	for kill := range chaosKills {
		if kill == chaosKills/2 {
			require.NoError(t, rs.db.Kill())
			time.Sleep(2 * time.Second) // replicas serve from memory meanwhile
			require.NoError(t, rs.db.Restart())
		}
		r := rs.replicas[rand.IntN(len(rs.replicas))]
		r.kill()
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		r.start()
		r.svidFrom(t)
	}
	elapsed := time.Since(start)
	endPolls := []int{partners[0].polls(t), partners[1].polls(t)}
	close(stop)
	wg.Wait()
	answers := wait()
	t.Logf("%d kills in %s; partner view: %d answers, sequence never went down", chaosKills, elapsed.Round(time.Second), answers)

	// Each partner polled about once per interval (2 s) by the three
	// together: three replicas each polling would be three times that.
	// Takeovers after a kill may add one early poll; failures retry sooner.
	intervals := elapsed.Seconds() / 2
	for i, p := range partners {
		n := endPolls[i] - startPolls[i]
		t.Logf("%s: %d polls in %.0f intervals", p.name, n, intervals)
		require.Less(t, float64(n), 2*intervals+chaosKills/2, "%s polled by more than one replica per interval", p.name)
		require.Greater(t, float64(n), intervals/3, "%s barely polled", p.name)
	}

	// Every acknowledged write is there.
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked)
	list := rs.replicas[1].treaty("entry", "show", "-selector", "unix:uid:4242")
	for _, id := range acked {
		require.Contains(t, list, id+"\n", "acknowledged entry lost")
	}
	t.Logf("%d acknowledged writes, none lost", len(acked))

	// The partners' latest bundles reached every replica.
	for _, p := range partners {
		want := sequence(t, parseSPIFFE(t, p.name, p.treaty("bundle", "show", "-format", "spiffe")))
		for _, r := range rs.replicas {
			waitStatus(t, r.server, p.name, func(st relationshipStatus) bool { return st.Sequence == want })
		}
	}
}
