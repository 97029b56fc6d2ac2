package bundleendpoint

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Connection caps, the defaults of Config.MaxConnsPerClient and
// Config.MaxConns. A partner needs one connection; 64 leaves room for a
// NAT in front of many partners. An HTTP/2 connection holds about 40 KB
// idle and some 64 KB after the largest frame the endpoint reads
// (BenchmarkIdleConnection), so the total cap bounds them to about 256 MB.
const (
	defaultMaxConnsPerClient = 64
	defaultMaxConns          = 4096
)

// refusalLogInterval is how often a client whose connections are refused
// is logged again.
const refusalLogInterval = time.Minute

// connLimiter wraps a listener and caps open connections per client and in
// total, counted from accept to close. A connection over either cap is
// closed as soon as it is accepted, before the TLS handshake, so it costs
// a file descriptor for a moment rather than a handshake and the memory of
// an idle connection.
type connLimiter struct {
	net.Listener
	perClient, total int
	refusals         *refusalLog

	mu       sync.Mutex
	open     int
	byClient map[netip.Addr]int
}

func newConnLimiter(l net.Listener, perClient, total int, refusals *refusalLog) *connLimiter {
	return &connLimiter{Listener: l, perClient: perClient, total: total, refusals: refusals, byClient: map[netip.Addr]int{}}
}

// Accept returns the next connection within the caps; those over a cap
// are closed and logged, and Accept waits for the next.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientOf(c.RemoteAddr())
		if atTotal, ok := l.acquire(client); !ok {
			l.refusals.note(client, atTotal)
			refuse(c)
			continue
		}
		return &limitedConn{Conn: c, limiter: l, client: client}, nil
	}
}

// acquire counts a new connection from client if both caps allow it;
// otherwise it reports whether the total cap was the one reached.
func (l *connLimiter) acquire(client netip.Addr) (atTotal, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.total:
		return true, false
	case l.byClient[client] >= l.perClient:
		return false, false
	}
	l.open++
	l.byClient[client]++
	return false, true
}

func (l *connLimiter) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byClient[client]--; l.byClient[client] <= 0 {
		delete(l.byClient, client)
	}
}

// refuse closes a connection over a cap with a reset rather than a FIN, so
// that the server keeps no TIME_WAIT state for it.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// limitedConn gives its place back to the limiter when first closed, just
// before the client can see it closed.
type limitedConn struct {
	net.Conn
	limiter *connLimiter
	client  netip.Addr
	closed  atomic.Bool
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.limiter.release(c.client)
	}
	return c.Conn.Close()
}

// clientOf is the client a connection from addr counts as, for the
// connection caps and the rate limit: its IP address, or for IPv6 its /64,
// which one host usually holds whole.
func clientOf(addr net.Addr) netip.Addr {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return clientKey(tcp.AddrPort().Addr())
	}
	return clientOfRemote(addr.String())
}

// clientOfRemote is clientOf for a request's RemoteAddr. An address that
// does not parse counts as one client with all the others that do not.
func clientOfRemote(remote string) netip.Addr {
	ap, _ := netip.ParseAddrPort(remote)
	return clientKey(ap.Addr())
}

func clientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// refusalLog logs refused connections once per client and then at most
// once per refusalLogInterval, with how many were refused in between, so
// that a client hammering the endpoint costs a log line a minute. Refusals
// at the total cap are one condition of the server, logged as one.
type refusalLog struct {
	log              *slog.Logger
	now              func() time.Time
	perClient, total int // the caps, for the log line

	mu      sync.Mutex
	clients map[netip.Addr]*refusals // the zero Addr: the total cap
}

type refusals struct {
	logged time.Time
	count  int // refused since logged
}

func newRefusalLog(log *slog.Logger, now func() time.Time, perClient, total int) *refusalLog {
	return &refusalLog{log: log, now: now, perClient: perClient, total: total, clients: map[netip.Addr]*refusals{}}
}

// note records a connection from client refused at the total cap or at
// the client's, and logs it if due.
func (r *refusalLog) note(client netip.Addr, atTotal bool) {
	key := client
	if atTotal {
		key = netip.Addr{}
	}
	count, due := r.count(key)
	switch {
	case !due:
	case atTotal:
		r.log.Warn("bundle endpoint at its total connection limit: refusing connections",
			attrLimit, r.total, attrRefused, count, attrClient, client.String())
	default:
		r.log.Warn("bundle endpoint refusing connections from a client at its connection limit",
			attrClient, client.String(), attrLimit, r.perClient, attrRefused, count)
	}
}

// count adds a refusal for key and reports whether to log now and how many
// refusals the line covers.
func (r *refusalLog) count(key netip.Addr) (int, bool) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rf, ok := r.clients[key]
	if !ok {
		if len(r.clients) >= maxTrackedClients {
			r.forget(now)
		}
		if len(r.clients) >= maxTrackedClients {
			return 0, false // as many clients logged this minute as we track: no more lines
		}
		rf = &refusals{}
		r.clients[key] = rf
	}
	rf.count++
	if !rf.logged.IsZero() && now.Sub(rf.logged) < refusalLogInterval {
		return 0, false
	}
	count := rf.count
	rf.logged, rf.count = now, 0
	return count, true
}

// forget drops clients last logged an interval ago or more: their next
// refusal is logged anyway.
func (r *refusalLog) forget(now time.Time) {
	for key, rf := range r.clients {
		if now.Sub(rf.logged) >= refusalLogInterval {
			delete(r.clients, key)
		}
	}
}
