package main

import (
	"cmp"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// phaseResult is what one load phase of the agents section measured.
type phaseResult struct {
	Syncs     int           `json:"syncs"`
	SyncsPerS float64       `json:"syncs_per_second"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Errors    int           `json:"errors"`
	CPU       float64       `json:"server_cpu_percent_of_one_core"`
	RSSKB     int           `json:"rss_kb"`
	FirstErr  string        `json:"first_error,omitempty"`
}

// agentFleet is the simulated agents that attached.
type agentFleet []*simAgent

// attachFleet attests one agent per token, 16 at a time, within
// agentAttachLimit. It returns the agents that attached and the first
// error of those that did not.
func attachFleet(ctx context.Context, addr string, tokens []string, bundle *x509bundle.Bundle) (agentFleet, error) {
	ctx, cancel := context.WithTimeout(ctx, agentAttachLimit)
	defer cancel()
	var (
		mu       sync.Mutex
		agents   agentFleet
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, 16)
	for _, tok := range tokens {
		wg.Go(func() {
			sem <- struct{}{}
			a, err := attachAgent(ctx, addr, tok, bundle)
			<-sem
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				return
			}
			agents = append(agents, a)
		})
	}
	wg.Wait()
	return agents, firstErr
}

func (f agentFleet) close() {
	for _, a := range f {
		_ = a.conn.Close()
	}
}

// paced is the open loop: every agent syncs every 5 s (±10 %), from a
// random offset, as spire-agent does, until ctx ends.
func (f agentFleet) paced(ctx context.Context, stats *syncStats) {
	var wg sync.WaitGroup
	for _, a := range f {
		wg.Go(func() { a.loop(ctx, stats) })
	}
	wg.Wait()
}

// saturated is the closed loop: agentSyncers workers each take the agent
// that has waited longest, sync it, and put it back at once, until ctx
// ends. Every connection stays open and takes its turn; no agent syncs
// twice at the same time.
func (f agentFleet) saturated(ctx context.Context, stats *syncStats) {
	idle := make(chan *simAgent, len(f))
	for _, a := range f {
		idle <- a
	}
	var wg sync.WaitGroup
	for range min(agentSyncers, len(f)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				a := <-idle // never blocks: there are fewer workers than agents
				start := time.Now()
				err := a.sync(ctx)
				if ctx.Err() == nil {
					stats.record(start, time.Now(), err)
				}
				idle <- a
			}
		})
	}
	wg.Wait()
}

// loop syncs every 5 s from a random offset until ctx ends.
func (a *simAgent) loop(ctx context.Context, stats *syncStats) {
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
		stats.record(start, time.Now(), err)
		// spire-agent: sync_interval ±10 %.
		timer.Reset(agentSyncEvery*9/10 + mrand.N(agentSyncEvery/5)) //nolint:gosec // jitter
	}
}

// phase is one server's load phase, measured over one or more windows.
type phase struct {
	stats  syncStats
	cpu    time.Duration
	window time.Duration
}

// run drives the fleet with load, lets it settle for warmup, then measures
// over window: the syncs that end in it and the server's CPU time. The
// load is stopped before run returns.
func (ph *phase) run(ctx context.Context, p *proc, load func(context.Context, *syncStats), warmup, window time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { load(ctx, &ph.stats); close(done) }()
	defer func() { cancel(); <-done }()
	if err := sleep(ctx, warmup); err != nil {
		return err
	}
	cpu0, err := p.cpuTime()
	if err != nil {
		return err
	}
	ph.stats.open(window)
	if err := sleep(ctx, window); err != nil {
		return err
	}
	cpu1, err := p.cpuTime()
	if err != nil {
		return err
	}
	ph.cpu += cpu1 - cpu0
	ph.window += window
	return nil
}

// result summarizes the windows measured so far, with the server's RSS
// read now.
func (ph *phase) result(p *proc) (phaseResult, error) {
	var res phaseResult
	var err error
	if res.RSSKB, err = p.rssKB(); err != nil {
		return res, err
	}
	res.CPU = 100 * float64(ph.cpu) / float64(ph.window)
	ph.stats.summarize(&res, ph.window)
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// syncStats collects what the simulated agents measured: the syncs that
// ended within the window. Counting by the end keeps a slow server's
// longest syncs in its figures while they overlap the window's start.
type syncStats struct {
	mu        sync.Mutex
	from, to  time.Time
	latencies []time.Duration
	errors    int
	firstErr  error
}

func (s *syncStats) open(window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from = time.Now()
	s.to = s.from.Add(window)
}

func (s *syncStats) record(start, end time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.from.IsZero() || end.Before(s.from) || !end.Before(s.to) {
		return
	}
	if err != nil {
		s.errors++
		s.firstErr = cmp.Or(s.firstErr, err)
		return
	}
	s.latencies = append(s.latencies, end.Sub(start))
}

func (s *syncStats) summarize(res *phaseResult, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lat := slices.Sorted(slices.Values(s.latencies))
	res.Syncs, res.Errors = len(lat), s.errors
	res.SyncsPerS = float64(len(lat)) / window.Seconds()
	if len(lat) > 0 {
		res.P50, res.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	if s.firstErr != nil {
		res.FirstErr = s.firstErr.Error()
	}
}

func logPhase(server, phase string, r phaseResult) {
	logf("   %s %s: %d syncs (%.1f/s), p50 %s, p99 %s, %d errors, CPU %.1f %%, RSS %.1f MiB", server, phase, r.Syncs, r.SyncsPerS,
		ms(r.P50), ms(r.P99), r.Errors, r.CPU, float64(r.RSSKB)/1024)
	if r.FirstErr != "" {
		logf("   first error: %s", r.FirstErr)
	}
}

// row is the phase as a row of the section's table.
func (r phaseResult) row(server, load, agents string) []string {
	return []string{server, load, agents, fmt.Sprintf("%.1f", r.SyncsPerS), ms(r.P50), ms(r.P99), fmt.Sprint(r.Errors),
		fmt.Sprintf("%.1f %%", r.CPU), fmt.Sprintf("%.1f MiB", float64(r.RSSKB)/1024)}
}
