package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

const (
	agentTD          = "agents.test"
	agentEntries     = 10              // entries per agent
	agentFederations = 100             // federated trust domains on the server
	agentFederatesN  = 10              // trust domains each agent's entries federate with
	agentSyncEvery   = 5 * time.Second // spire-agent's default sync_interval
	agentWindow      = 60 * time.Second
	agentWarmup      = agentSyncEvery + time.Second
	agentAttachLimit = 5 * time.Minute
)

// agentResult is one server's agents run.
type agentResult struct {
	Server    string        `json:"server"`
	Agents    int           `json:"agents"`
	Attached  int           `json:"attached"`
	AttachFor time.Duration `json:"attach_ns"`
	Syncs     int           `json:"syncs"`
	SyncsPerS float64       `json:"syncs_per_second"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Errors    int           `json:"errors"`
	CPU       float64       `json:"server_cpu_percent_of_one_core"`
	RSSKB     int           `json:"rss_kb"`
	FirstErr  string        `json:"first_error,omitempty"`
}

func (h *harness) agentRuns(ctx context.Context) error {
	n := h.cfg.agents
	sec := h.res.section(fmt.Sprintf("8. Agents (%d simulated spire-agents, %d entries each, sync every 5 s, %d federated trust domains)", n, agentEntries, agentFederations),
		"server", "agents", "syncs/s", "p50", "p99", "errors", "server CPU (% of one core)", "RSS")
	sec.Note = fmt.Sprintf("Setup through the admin API, the same calls for both servers: %d federated bundles (BatchSetFederatedBundle), "+
		"one join token per agent with agent_id spiffe://%s/node<i> (CreateJoinToken), and %d entries per agent parented to that ID, "+
		"each federating with %d trust domains (BatchCreateEntry, batches of 500). Each simulated agent attests with its join token "+
		"(AttestAgent over TLS, verifying spiffe://%s/spire/server against the admin API's bundle), then keeps one mTLS connection and "+
		"every 5 s (jittered start) does what spire-agent v1.15.3 does per sync: SyncAuthorizedEntries, GetBundle, and GetFederatedBundle "+
		"for each trust domain its entries federate with (up to 10 at once); no SVID signing. Latency is one whole sync; errors are "+
		"failed syncs, counting a sync that returns fewer than the agent's 10 entries as failed. Measured over %s "+
		"after every agent is attached and one sync interval has passed; server CPU is the server process's user+system time over that "+
		"window, RSS is read after it. The agents run as goroutines in the harness, on the same 2 CPUs as the server. SPIRE runs with its "+
		"attestation and signing rate limits off (all agents come from 127.0.0.1). Syncs/s is bounded by the offered load "+
		"(agents ÷ 5 s): a server only falls below it when syncs queue up, so the throughput target can only be met if SPIRE falls behind.",
		agentFederations, agentTD, agentEntries, agentFederatesN, agentTD, agentWindow)
	var results []agentResult
	for _, server := range []string{"treaty", "SPIRE"} {
		r, err := h.agentsOne(ctx, server, n)
		if err != nil {
			return fmt.Errorf("%s: %w", server, err)
		}
		results = append(results, r)
		sec.row(r.Server, fmt.Sprintf("%d of %d", r.Attached, r.Agents), fmt.Sprintf("%.1f", r.SyncsPerS), ms(r.P50), ms(r.P99),
			fmt.Sprint(r.Errors), fmt.Sprintf("%.1f %%", r.CPU), fmt.Sprintf("%.1f MiB", float64(r.RSSKB)/1024))
	}
	t, s := results[0], results[1]
	sec.check("treaty sync throughput ≥ 2× SPIRE's", ratio(t.SyncsPerS, s.SyncsPerS),
		fmt.Sprintf("%%.2f× (%.1f vs %.1f syncs/s)", t.SyncsPerS, s.SyncsPerS), t.SyncsPerS >= 2*s.SyncsPerS)
	sec.check("treaty p99 < SPIRE's", float64(t.P99)/float64(time.Millisecond),
		fmt.Sprintf("%%.2f ms (SPIRE %s)", ms(s.P99)), t.P99 < s.P99)
	sec.check("treaty RSS < 1/2 SPIRE's", ratio(float64(t.RSSKB), float64(s.RSSKB)),
		fmt.Sprintf("%%.2f× (%.1f vs %.1f MiB)", float64(t.RSSKB)/1024, float64(s.RSSKB)/1024), 2*t.RSSKB < s.RSSKB)
	sec.Data["runs"] = results
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func (h *harness) agentsOne(ctx context.Context, server string, n int) (agentResult, error) {
	logf("   %s with %d agents", server, n)
	res := agentResult{Server: server, Agents: n}
	p, err := h.startAgentServer(ctx, server)
	if err != nil {
		return res, err
	}
	defer p.stop()
	if _, err := waitReady(ctx, "https://"+p.addr, time.Minute); err != nil {
		return res, err
	}
	admin, err := p.dial()
	if err != nil {
		return res, err
	}
	defer admin.Close()
	tokens, bundle, err := setupAgents(ctx, admin, n)
	if err != nil {
		return res, err
	}
	logf("   %s set up: %d tokens, %d entries", server, n, n*(agentEntries))
	return runFleet(ctx, p, res, tokens, bundle)
}

func (h *harness) startAgentServer(ctx context.Context, server string) (*proc, error) {
	if server != "treaty" {
		return h.startSPIRE(ctx, agentTD, nil)
	}
	port, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := h.startTreaty(ctx, agentTD, treatyOpts{extra: "agent_api:\n  address: " + addr + "\n"})
	if p != nil {
		p.agent = addr
	}
	return p, err
}

// setupAgents creates the federated bundles, join tokens and entries, and
// returns the tokens and the server's own bundle.
func setupAgents(ctx context.Context, conn *grpc.ClientConn, n int) ([]string, *x509bundle.Bundle, error) {
	bundles := bundlev1.NewBundleClient(conn)
	if err := setFederatedBundles(ctx, bundles); err != nil {
		return nil, nil, err
	}
	agents := agentv1.NewAgentClient(conn)
	tokens := make([]string, n)
	for i := range n {
		t, err := agents.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 3600, AgentId: &types.SPIFFEID{TrustDomain: agentTD, Path: nodePath(i)}})
		if err != nil {
			return nil, nil, fmt.Errorf("create join token: %w", err)
		}
		tokens[i] = t.GetValue()
	}
	if err := createAgentEntries(ctx, entryv1.NewEntryClient(conn), n); err != nil {
		return nil, nil, err
	}
	b, err := bundles.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("get bundle: %w", err)
	}
	own, err := x509Bundle(b)
	return tokens, own, err
}

func nodePath(i int) string { return fmt.Sprintf("/node%d", i) }

func fedTD(k int) string { return fmt.Sprintf("fed%d.test", k%agentFederations) }

func setFederatedBundles(ctx context.Context, c bundlev1.BundleClient) error {
	req := &bundlev1.BatchSetFederatedBundleRequest{}
	for k := range agentFederations {
		der, err := smallCA(fedTD(k))
		if err != nil {
			return err
		}
		req.Bundle = append(req.Bundle, &types.Bundle{TrustDomain: fedTD(k), SequenceNumber: 1,
			X509Authorities: []*types.X509Certificate{{Asn1: der}}})
	}
	resp, err := c.BatchSetFederatedBundle(ctx, req)
	if err != nil {
		return fmt.Errorf("set federated bundles: %w", err)
	}
	for _, r := range resp.GetResults() {
		if r.GetStatus().GetCode() != 0 {
			return fmt.Errorf("set federated bundle: %s", r.GetStatus().GetMessage())
		}
	}
	return nil
}

func smallCA(td string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: td},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	return x509.CreateCertificate(rand.Reader, ca, ca, key.Public(), key)
}

func createAgentEntries(ctx context.Context, c entryv1.EntryClient, n int) error {
	const batch = 500
	var entries []*types.Entry
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		resp, err := c.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
		entries = entries[:0]
		if err != nil {
			return fmt.Errorf("create entries: %w", err)
		}
		for _, r := range resp.GetResults() {
			if r.GetStatus().GetCode() != 0 {
				return fmt.Errorf("create entry: %s", r.GetStatus().GetMessage())
			}
		}
		return nil
	}
	for i := range n {
		var feds []string
		for k := range agentFederatesN {
			feds = append(feds, fedTD(i*agentFederatesN+k))
		}
		for j := range agentEntries {
			entries = append(entries, &types.Entry{
				ParentId:      &types.SPIFFEID{TrustDomain: agentTD, Path: nodePath(i)},
				SpiffeId:      &types.SPIFFEID{TrustDomain: agentTD, Path: fmt.Sprintf("/node%d/w%d", i, j)},
				Selectors:     []*types.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 1000+j)}},
				FederatesWith: feds,
			})
			if len(entries) == batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

func x509Bundle(b *types.Bundle) (*x509bundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, a := range b.GetX509Authorities() {
		c, err := x509.ParseCertificate(a.GetAsn1())
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	return x509bundle.FromX509Authorities(td, certs), nil
}

// fleetStats collects what the simulated agents measured.
type fleetStats struct {
	mu        sync.Mutex
	from, to  time.Time // the measurement window
	latencies []time.Duration
	errors    int
	firstErr  error
}

func (s *fleetStats) record(start time.Time, d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.from.IsZero() || start.Before(s.from) || !start.Before(s.to) {
		return
	}
	if err != nil {
		s.errors++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.latencies = append(s.latencies, d)
}

func runFleet(ctx context.Context, p *proc, res agentResult, tokens []string, bundle *x509bundle.Bundle) (agentResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stats := &fleetStats{}
	var attached atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16) // attestations in flight
	start := time.Now()
	var attachErr atomic.Value
	for _, tok := range tokens {
		wg.Go(func() {
			sem <- struct{}{}
			a, err := attachAgent(ctx, p.agent, tok, bundle)
			<-sem
			if err != nil {
				attachErr.CompareAndSwap(nil, err)
				return
			}
			defer a.conn.Close()
			attached.Add(1)
			a.loop(ctx, stats)
		})
	}
	deadline := time.Now().Add(agentAttachLimit)
	for int(attached.Load()) < len(tokens) && time.Now().Before(deadline) && attachErr.Load() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	res.AttachFor = time.Since(start)
	res.Attached = int(attached.Load())
	if err, _ := attachErr.Load().(error); err != nil {
		logf("   %s: attach error: %v", p.name, err)
	}
	logf("   %d of %d agents attached in %s", res.Attached, len(tokens), res.AttachFor.Round(100*time.Millisecond))
	time.Sleep(agentWarmup)
	cpu0, err := p.cpuTime()
	if err != nil {
		return res, err
	}
	stats.mu.Lock()
	stats.from, stats.to = time.Now(), time.Now().Add(agentWindow)
	stats.mu.Unlock()
	time.Sleep(agentWindow)
	cpu1, err := p.cpuTime()
	if err != nil {
		return res, err
	}
	res.CPU = 100 * float64(cpu1-cpu0) / float64(agentWindow)
	if res.RSSKB, err = p.rssKB(); err != nil {
		return res, err
	}
	cancel()
	wg.Wait()
	stats.mu.Lock()
	defer stats.mu.Unlock()
	lat := stats.latencies
	slices.Sort(lat)
	res.Syncs, res.Errors = len(lat), stats.errors
	res.SyncsPerS = float64(len(lat)) / agentWindow.Seconds()
	if len(lat) > 0 {
		res.P50, res.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	if stats.firstErr != nil {
		res.FirstErr = stats.firstErr.Error()
	}
	logf("   %s: %d syncs (%.1f/s), p50 %s, p99 %s, %d errors, CPU %.1f %%, RSS %.1f MiB", p.name, res.Syncs, res.SyncsPerS,
		ms(res.P50), ms(res.P99), res.Errors, res.CPU, float64(res.RSSKB)/1024)
	if res.FirstErr != "" {
		logf("   first error: %s", res.FirstErr)
	}
	return res, nil
}

// simAgent is one simulated spire-agent after attestation.
type simAgent struct {
	conn     *grpc.ClientConn
	entries  entryv1.EntryClient
	bundles  bundlev1.BundleClient
	revision map[string]int64 // cached entries: id → revision number
	feds     map[string][]string
}

func attachAgent(ctx context.Context, addr, token string, bundle *x509bundle.Bundle) (*simAgent, error) {
	serverID := spiffeid.RequireFromSegments(bundle.TrustDomain(), "spire", "server")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tlsConf := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(serverID))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))
	if err != nil {
		return nil, err
	}
	chain, err := attest(ctx, agentv1.NewAgentClient(conn), token, key)
	_ = conn.Close()
	if err != nil {
		return nil, err
	}
	svid, err := x509svid.ParseRaw(chain, mustPKCS8(key))
	if err != nil {
		return nil, fmt.Errorf("agent SVID: %w", err)
	}
	mtls := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(serverID))
	conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls)))
	if err != nil {
		return nil, err
	}
	return &simAgent{conn: conn, entries: entryv1.NewEntryClient(conn), bundles: bundlev1.NewBundleClient(conn),
		revision: map[string]int64{}, feds: map[string][]string{}}, nil
}

func mustPKCS8(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return der
}

// attest runs join-token attestation and returns the agent SVID chain
// (DER certificates concatenated).
func attest(ctx context.Context, c agentv1.AgentClient, token string, key *ecdsa.PrivateKey) ([]byte, error) {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}}}, key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := c.AttestAgent(ctx)
	if err != nil {
		return nil, err
	}
	err = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "join_token", Payload: []byte(token)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}})
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	_ = stream.CloseSend()
	var chain []byte
	for _, der := range resp.GetResult().GetSvid().GetCertChain() {
		chain = append(chain, der...)
	}
	if len(chain) == 0 {
		return nil, errors.New("attest: no agent SVID in the response")
	}
	return chain, nil
}

// loop syncs every 5 s from a random offset until ctx ends.
func (a *simAgent) loop(ctx context.Context, stats *fleetStats) {
	timer := time.NewTimer(mrand.N(agentSyncEvery)) //nolint:gosec // jitter
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		err := a.sync(ctx)
		if ctx.Err() != nil {
			return
		}
		stats.record(start, time.Since(start), err)
		// spire-agent: sync_interval ±10 %.
		timer.Reset(agentSyncEvery*9/10 + mrand.N(agentSyncEvery/5)) //nolint:gosec // jitter
	}
}

// sync is one spire-agent sync: entries, own bundle, federated bundles.
func (a *simAgent) sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.syncEntries(ctx); err != nil {
		return fmt.Errorf("sync entries: %w", err)
	}
	if len(a.revision) < agentEntries { // a wrong setup must not pass as fast syncs
		return fmt.Errorf("sync entries: %d entries authorized, want at least %d", len(a.revision), agentEntries)
	}
	if _, err := a.bundles.GetBundle(ctx, &bundlev1.GetBundleRequest{}); err != nil {
		return fmt.Errorf("get bundle: %w", err)
	}
	return a.fetchFederated(ctx)
}

func (a *simAgent) fetchFederated(ctx context.Context) error {
	set := map[string]bool{}
	for _, feds := range a.feds {
		for _, td := range feds {
			set[td] = true
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(set))
	sem := make(chan struct{}, 10)
	for td := range set {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := a.bundles.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: td})
			if err != nil && status.Code(err) != codes.NotFound {
				errs <- fmt.Errorf("get federated bundle %s: %w", td, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

var agentOutputMask = &types.EntryMask{SpiffeId: true, Selectors: true, FederatesWith: true, Admin: true, Downstream: true,
	RevisionNumber: true, StoreSvid: true, Hint: true, AdditionalAttributes: true, CreatedAt: true}

// syncEntries runs SyncAuthorizedEntries as spire-agent does: a full list
// in one response, or revision pages then the entries it lacks.
func (a *simAgent) syncEntries(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // spire-agent never closes its side; it cancels
	defer cancel()
	stream, err := a.entries.SyncAuthorizedEntries(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: agentOutputMask}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if len(first.GetEntryRevisions()) == 0 {
		a.replace(first.GetEntries())
		return nil
	}
	return a.sparse(stream, first)
}

func (a *simAgent) replace(entries []*types.Entry) {
	clear(a.revision)
	clear(a.feds)
	a.keep(entries)
}

func (a *simAgent) keep(entries []*types.Entry) {
	for _, e := range entries {
		a.revision[e.GetId()] = e.GetRevisionNumber()
		a.feds[e.GetId()] = e.GetFederatesWith()
	}
}

func (a *simAgent) sparse(stream grpc.BidiStreamingClient[entryv1.SyncAuthorizedEntriesRequest, entryv1.SyncAuthorizedEntriesResponse], first *entryv1.SyncAuthorizedEntriesResponse) error {
	pageSize := len(first.GetEntryRevisions())
	seen := map[string]bool{}
	var need []string
	resp := first
	for {
		for _, r := range resp.GetEntryRevisions() {
			seen[r.GetId()] = true
			if rev, ok := a.revision[r.GetId()]; !ok || rev != r.GetRevisionNumber() {
				need = append(need, r.GetId())
			}
		}
		if !resp.GetMore() {
			break
		}
		var err error
		if resp, err = stream.Recv(); err != nil {
			return err
		}
	}
	for id := range a.revision {
		if !seen[id] {
			delete(a.revision, id)
			delete(a.feds, id)
		}
	}
	slices.Sort(need)
	for chunk := range slices.Chunk(need, pageSize) {
		if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: chunk}); err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			a.keep(resp.GetEntries())
			if !resp.GetMore() {
				break
			}
		}
	}
	return nil
}
