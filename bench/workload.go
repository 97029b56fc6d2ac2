package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// createEntry gives this process an SVID on p, federating with partners.
func createEntry(ctx context.Context, conn *grpc.ClientConn, td string, federatesWith ...string) error {
	resp, err := entryv1.NewEntryClient(conn).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:      &types.SPIFFEID{TrustDomain: td, Path: "/bench"},
		Selectors:     []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}},
		FederatesWith: federatesWith,
	}}})
	if err != nil {
		return err
	}
	if st := resp.GetResults()[0].GetStatus(); st.GetCode() != 0 {
		return fmt.Errorf("create entry: %s", st.GetMessage())
	}
	return nil
}

// rotation measures how long a partner's new authority takes to reach our
// workloads.
func (h *harness) rotation(ctx context.Context) error {
	sec := h.res.section("5. Rotation propagation (partner's new authority → our workloads)",
		"path", "median", "max", "runs")
	partner, err := h.startTreaty(ctx, "partner.test", treatyOpts{refreshHint: "2s"})
	if err != nil {
		return err
	}
	defer partner.stop()
	us, err := h.startTreaty(ctx, "us.test", treatyOpts{extra: "federation:\n  min_refresh: 1s\n"})
	if err != nil {
		return err
	}
	defer us.stop()
	for _, p := range []*proc{partner, us} {
		if _, err := waitReady(ctx, "https://"+p.addr, time.Minute); err != nil {
			return err
		}
	}
	pc, err := partner.dial()
	if err != nil {
		return err
	}
	defer pc.Close()
	uc, err := us.dial()
	if err != nil {
		return err
	}
	defer uc.Close()
	if err := relate(ctx, pc, uc, partner); err != nil {
		return err
	}
	if err := createEntry(ctx, uc, "us.test", "partner.test"); err != nil {
		return err
	}
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+us.wlSock)))
	if err != nil {
		return err
	}
	defer source.Close()
	partnerTD := spiffeid.RequireTrustDomainFromString("partner.test")
	la := localauthorityv1.NewLocalAuthorityClient(pc)
	var polled, forced []time.Duration
	for i := range 6 {
		force := i%2 == 1
		prep, err := la.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
		if err != nil {
			return err
		}
		id := prep.GetPreparedAuthority().GetAuthorityId()
		t0, err := waitServed(ctx, partner.addr, id)
		if err != nil {
			return err
		}
		if force {
			_, _ = trustdomainv1.NewTrustDomainClient(uc).RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "partner.test"})
		}
		if err := waitTrusted(ctx, source, partnerTD, id); err != nil {
			return err
		}
		d := time.Since(t0)
		if force {
			forced = append(forced, d)
		} else {
			polled = append(polled, d)
		}
		if _, err := la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: id}); err != nil {
			return err
		}
	}
	sec.Note = "The partner's refresh hint is 2 s and our federation.min_refresh 1 s, so the polled path is bounded by the hint; with the defaults (hint 5m, min_refresh 30s) it is bounded by the hint the same way: at most one hint plus jitter (10 %) plus the figure of the forced path. The forced path starts a refresh at once (treaty federation refresh) and measures what treaty itself adds: fetch, verify, store, snapshot, push to the stream."
	for _, r := range []struct {
		name string
		ds   []time.Duration
	}{{"polled at the partner's hint (2 s)", polled}, {"refresh started at once", forced}} {
		slices.Sort(r.ds)
		sec.row(r.name, ms(r.ds[len(r.ds)/2]), ms(r.ds[len(r.ds)-1]), fmt.Sprint(len(r.ds)))
		sec.Data[r.name] = r.ds
	}
	return nil
}

// relate makes us federate with partner over https_spiffe.
func relate(ctx context.Context, pc, uc *grpc.ClientConn, partner *proc) error {
	b, err := bundlev1.NewBundleClient(pc).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return err
	}
	resp, err := trustdomainv1.NewTrustDomainClient(uc).BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{{
			TrustDomain: "partner.test", BundleEndpointUrl: "https://" + partner.addr,
			BundleEndpointProfile: &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: "spiffe://partner.test/spire/server"}},
			TrustDomainBundle:     b,
		}},
	})
	if err != nil {
		return err
	}
	if st := resp.GetResults()[0].GetStatus(); st.GetCode() != 0 {
		return fmt.Errorf("create relationship: %s", st.GetMessage())
	}
	return nil
}

// waitServed polls the partner's endpoint until its bundle holds the
// authority, and returns when it first did.
func waitServed(ctx context.Context, addr, id string) (time.Time, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		body, _, err := get(ctx, "https://"+addr)
		if err == nil && bundleHas(body, id) {
			return time.Now(), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	body, _, err := get(ctx, "https://"+addr)
	if err != nil {
		return time.Time{}, fmt.Errorf("the partner never served authority %s: %w", id, err)
	}
	return time.Time{}, fmt.Errorf("the partner never served authority %s (it serves %v)", id, authorityIDs(body))
}

func bundleHas(doc []byte, id string) bool {
	return slices.Contains(authorityIDs(doc), id)
}

// authorityIDs lists the subject key IDs of a bundle's X.509 authorities.
func authorityIDs(doc []byte) []string {
	var ids []string
	var b struct {
		Keys []struct {
			X5c [][]byte `json:"x5c"`
		} `json:"keys"`
	}
	if json.Unmarshal(doc, &b) != nil {
		return nil
	}
	for _, k := range b.Keys {
		for _, der := range k.X5c {
			if c, err := x509.ParseCertificate(der); err == nil {
				ids = append(ids, hex.EncodeToString(c.SubjectKeyId))
			}
		}
	}
	return ids
}

func waitTrusted(ctx context.Context, s *workloadapi.X509Source, td spiffeid.TrustDomain, id string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := s.GetX509BundleForTrustDomain(td); err == nil {
			for _, c := range b.X509Authorities() {
				if hex.EncodeToString(c.SubjectKeyId) == id {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.Updated():
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("our workload never received authority %s", id)
}

// workloadAPI measures X509-SVID fetch latency and a rotation pushed to
// 1,000 open streams.
func (h *harness) workloadAPI(ctx context.Context) error {
	sec := h.res.section("7. Workload API", "measurement", "figure")
	p, err := h.startTreaty(ctx, "wl.test", treatyOpts{})
	if err != nil {
		return err
	}
	defer p.stop()
	if _, err := waitReady(ctx, "https://"+p.addr, time.Minute); err != nil {
		return err
	}
	conn, err := p.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := createEntry(ctx, conn, "wl.test"); err != nil {
		return err
	}
	lat, err := fetchLatency(ctx, p.wlSock, 300)
	if err != nil {
		return err
	}
	sec.row("FetchX509SVID, new connection each (300 calls): p50", ms(lat[len(lat)/2]))
	sec.row("FetchX509SVID, new connection each (300 calls): p99", ms(lat[len(lat)*99/100]))
	const streams = 1000
	fanout, err := fanOut(ctx, p.wlSock, conn, streams)
	if err != nil {
		return err
	}
	sec.row(fmt.Sprintf("CA rotation pushed to %d open streams: all received", streams), ms(fanout))
	sec.Data["fetch_latency_ns"] = lat
	sec.Data["fanout_ns"] = fanout
	sec.Note = "The caller is attested on every call (SO_PEERCRED, /proc, executable hash cached). The rotation is an activate of a prepared X.509 authority; the time runs from the activate call to the last of the streams receiving an SVID signed by the new authority."
	return nil
}

func fetchLatency(ctx context.Context, socket string, n int) ([]time.Duration, error) {
	var out []time.Duration
	for range n {
		t0 := time.Now()
		if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket)); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	slices.Sort(out)
	return out, nil
}

// fanOut opens streams over ten connections, rotates the CA and waits
// until every stream received an SVID from the new authority.
func fanOut(ctx context.Context, socket string, admin *grpc.ClientConn, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range 10 {
		c, err := grpc.NewClient("unix://"+filepath.Clean(socket), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
	}
	var mu sync.Mutex
	target := ""
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			defer done.Done()
			stream, err := workload.NewSpiffeWorkloadAPIClient(conns[i%len(conns)]).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err != nil {
				ready.Done()
				errs <- err
				return
			}
			first := true
			for {
				resp, err := stream.Recv()
				if first {
					ready.Done()
					first = false
				}
				if err != nil {
					errs <- err
					return
				}
				certs, err := x509.ParseCertificates(resp.GetSvids()[0].GetX509Svid())
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				t := target
				mu.Unlock()
				if t != "" && hex.EncodeToString(certs[0].AuthorityKeyId) == t {
					return
				}
			}
		}()
	}
	ready.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	la := localauthorityv1.NewLocalAuthorityClient(admin)
	prep, err := la.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	if err != nil {
		return 0, err
	}
	mu.Lock()
	target = prep.GetPreparedAuthority().GetAuthorityId()
	mu.Unlock()
	start := time.Now()
	if _, err := la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: target}); err != nil {
		return 0, err
	}
	done.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, fmt.Errorf("a stream failed: %w", err)
	default:
	}
	return elapsed, nil
}
