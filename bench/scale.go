package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// steadyWindow is how long steady-state CPU is sampled.
// It covers one refresh hint of the fleet (60 s) plus jitter, so every
// partner is polled once inside it.
const steadyWindow = 70 * time.Second

// scaleResult is one federation-scale run.
type scaleResult struct {
	Server      string        `json:"server"`
	Partners    int           `json:"partners"`
	FirstSync   time.Duration `json:"first_sync_ns"`
	RSSKB       int           `json:"rss_kb"`
	SteadyCPU   float64       `json:"steady_cpu_percent_of_one_core"`
	Synced      int           `json:"synced"`
	TimeLimited bool          `json:"time_limited"`
}

func (h *harness) scaleRuns(ctx context.Context) error {
	sec := h.res.section("4. Federation scale (partners served by one local fleet server, refresh hint 60 s)",
		"server", "partners", "first full sync", "RSS after sync", "steady CPU (% of one core)")
	sec.Note = fmt.Sprintf("Relationships are created through the TrustDomain API in batches of 500 (the same call for both servers), profile https_web, one URL path per partner on one HTTPS listener. First full sync: from the first create call until every partner's bundle is stored (CountBundles). Steady CPU: user+system time over %s after the sync. SPIRE trusts the fleet CA through SSL_CERT_FILE.", steadyWindow)
	var sizes []int
	for f := range strings.SplitSeq(h.cfg.scale, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("-scale %q: %w", h.cfg.scale, err)
		}
		sizes = append(sizes, n)
	}
	var results []scaleResult
	for i, n := range sizes {
		r, err := h.scaleOne(ctx, "treaty", n)
		if err != nil {
			return err
		}
		results = append(results, r)
		if i < 2 {
			r, err := h.scaleOne(ctx, "SPIRE", n)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	for _, r := range results {
		sync := r.FirstSync.Round(100 * time.Millisecond).String()
		if r.TimeLimited {
			sync = fmt.Sprintf("> %s (%d of %d)", r.FirstSync.Round(time.Second), r.Synced, r.Partners)
		}
		sec.row(r.Server, fmt.Sprint(r.Partners), sync, fmt.Sprintf("%.1f MiB", float64(r.RSSKB)/1024), fmt.Sprintf("%.1f %%", r.SteadyCPU))
		if r.Server == "treaty" && r.Partners == 10000 {
			sec.check("treaty first sync at 10,000 ≤ 60 s", r.FirstSync.Seconds(), "%.1f s", !r.TimeLimited && r.FirstSync <= time.Minute)
			sec.check("treaty RSS at 10,000 ≤ 300 MB", float64(r.RSSKB)/1000, "%.0f MB", r.RSSKB <= 300_000)
			sec.check("treaty steady CPU at 10,000 ≤ 15 % of one core", r.SteadyCPU, "%.1f %%", r.SteadyCPU <= 15)
		}
	}
	sec.Data["runs"] = results
	return nil
}

// syncLimit bounds a first sync.
const syncLimit = 3 * time.Minute

func (h *harness) scaleOne(ctx context.Context, server string, n int) (scaleResult, error) {
	logf("   %s with %d partners", server, n)
	res := scaleResult{Server: server, Partners: n}
	pki, err := newWebPKI(h.dir("fleet"))
	if err != nil {
		return res, err
	}
	f, err := startFleet(ctx, pki, n)
	if err != nil {
		return res, err
	}
	defer f.stop() //nolint:contextcheck // stopping must work after ctx is cancelled
	var p *proc
	if server == "treaty" {
		p, err = h.startTreaty(ctx, "scale.test", treatyOpts{caFile: pki.caFile})
	} else {
		p, err = h.startSPIRE(ctx, "scale.test", []string{"SSL_CERT_FILE=" + pki.caFile})
	}
	if err != nil {
		return res, err
	}
	defer p.stop()
	if _, err := waitReady(ctx, "https://"+p.addr, time.Minute); err != nil {
		return res, err
	}
	conn, err := p.dial()
	if err != nil {
		return res, err
	}
	defer conn.Close()
	start := time.Now()
	if err := createRelationships(ctx, trustdomainv1.NewTrustDomainClient(conn), f.url, n); err != nil {
		return res, err
	}
	bundles := bundlev1.NewBundleClient(conn)
	for {
		count, err := bundles.CountBundles(ctx, &bundlev1.CountBundlesRequest{})
		if err != nil {
			return res, err
		}
		res.Synced = int(count.GetCount()) - 1
		if res.Synced >= n {
			break
		}
		if time.Since(start) > syncLimit {
			res.TimeLimited = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.FirstSync = time.Since(start)
	logf("   %s synced %d/%d in %s", server, res.Synced, n, res.FirstSync.Round(100*time.Millisecond))
	cpu0, err := p.cpuTime()
	if err != nil {
		return res, err
	}
	time.Sleep(steadyWindow) // the measurement window
	cpu1, err := p.cpuTime()
	if err != nil {
		return res, err
	}
	res.SteadyCPU = 100 * float64(cpu1-cpu0) / float64(steadyWindow)
	res.RSSKB, err = p.rssKB()
	return res, err
}

func createRelationships(ctx context.Context, c trustdomainv1.TrustDomainClient, fleetURL string, n int) error {
	const batch = 500
	for lo := 0; lo < n; lo += batch {
		req := &trustdomainv1.BatchCreateFederationRelationshipRequest{}
		for i := lo; i < min(lo+batch, n); i++ {
			req.FederationRelationships = append(req.FederationRelationships, &types.FederationRelationship{
				TrustDomain:           fmt.Sprintf("p%d.fleet.test", i),
				BundleEndpointUrl:     fmt.Sprintf("%s/p%d", fleetURL, i),
				BundleEndpointProfile: &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}},
			})
		}
		resp, err := c.BatchCreateFederationRelationship(ctx, req)
		if err != nil {
			return fmt.Errorf("create relationships: %w", err)
		}
		for _, r := range resp.GetResults() {
			if r.GetStatus().GetCode() != 0 {
				return fmt.Errorf("create relationship: %s", r.GetStatus().GetMessage())
			}
		}
	}
	return nil
}
