package bundleendpoint

import (
	"net/netip"
	"sync"
	"time"
)

// maxTrackedClients bounds the limiter's memory and its sweeps.
const maxTrackedClients = 10000

// limiter is a token bucket per client (an IP address; for IPv6, its /64):
// rate tokens per second, bursts of up to max(rate, 1) requests. It tracks
// at most maxTrackedClients. When the table is full, clients idle long
// enough to have a full bucket are forgotten, at most once a second; while
// it stays full, new clients share one bucket, so that a flood of
// addresses neither grows the table nor escapes the limit, and costs no
// sweep per request.
type limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	swept   time.Time // last forgetIdle
}

type bucket struct {
	tokens float64
	last   time.Time
}

// overflow is the key of the bucket shared by clients the full table
// cannot hold.
var overflow = netip.Addr{}

func newLimiter(rate float64, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: max(rate, 1), now: now, buckets: map[netip.Addr]*bucket{}}
}

func (l *limiter) allow(client netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.bucket(client, now)
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// bucket returns client's bucket, or a new one, or the overflow bucket
// when the table is full.
func (l *limiter) bucket(client netip.Addr, now time.Time) *bucket {
	if b, ok := l.buckets[client]; ok {
		return b
	}
	if len(l.buckets) >= maxTrackedClients && now.Sub(l.swept) >= time.Second {
		l.forgetIdle(now)
	}
	if len(l.buckets) >= maxTrackedClients {
		client = overflow
		if b, ok := l.buckets[client]; ok {
			return b
		}
	}
	b := &bucket{tokens: l.burst, last: now}
	l.buckets[client] = b
	return b
}

// forgetIdle drops the buckets that have been refilled completely.
func (l *limiter) forgetIdle(now time.Time) {
	l.swept = now
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	for client, b := range l.buckets {
		if now.Sub(b.last) >= refill {
			delete(l.buckets, client)
		}
	}
}
