package bundleendpoint

import (
	"sync"
	"time"
)

// maxTrackedClients bounds the limiter's memory: past it, clients idle for
// longer than a second are forgotten (their bucket would be full anyway).
const maxTrackedClients = 10000

// limiter is a token bucket per client IP: rate tokens per second, bursts
// of up to max(rate, 1) requests.
type limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: max(rate, 1), now: now, buckets: map[string]*bucket{}}
}

func (l *limiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxTrackedClients {
			l.forgetIdle(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *limiter) forgetIdle(now time.Time) {
	for ip, b := range l.buckets {
		if now.Sub(b.last) > time.Second*time.Duration(1+l.burst/l.rate) {
			delete(l.buckets, ip)
		}
	}
}
