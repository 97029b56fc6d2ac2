package bundleendpoint

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/syncbuf"
)

// Loopback clients: every address in 127.0.0.0/8 is loopback on Linux, so a
// second client can connect from 127.0.0.2.
const (
	clientA = "127.0.0.1"
	clientB = "127.0.0.2"
)

func TestConnectionLimit(t *testing.T) {
	tests := []struct {
		name             string
		perClient, total int
		// otherGetsIn: a connection from clientB is accepted while clientA
		// is refused.
		otherGetsIn bool
		logLine     string
	}{
		{"fail/over the per-client cap, other clients unaffected", 2, 100, true, "refusing connections from a client at its connection limit"},
		{"fail/over the total cap, every client refused", 100, 2, false, "at its total connection limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCA(t)
			logs := &lockedBuffer{}
			_, url := serve(t, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c,
				MaxConnsPerClient: tt.perClient, MaxConns: tt.total, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			addr := addrOf(url)
			doc, _ := c.Document()

			held := make([]*tls.Conn, min(tt.perClient, tt.total))
			for i := range held {
				conn, err := dialTLS(t.Context(), addr, clientA)
				require.NoError(t, err, "connection %d is within the caps", i+1)
				t.Cleanup(func() { _ = conn.Close() })
				held[i] = conn
			}
			for range 2 {
				_, err := dialTLS(t.Context(), addr, clientA)
				require.Error(t, err, "a connection over the cap is closed before the handshake")
			}
			require.Equal(t, 1, strings.Count(logs.String(), tt.logLine), "refusals are logged once a minute:\n%s", logs)
			require.Contains(t, logs.String(), "client="+clientA)

			if other, err := dialTLS(t.Context(), addr, clientB); !canBind(err) {
				t.Log("cannot connect from " + clientB + ": the other client is not tried")
			} else if tt.otherGetsIn {
				require.NoError(t, err, "another client is not held to this one's cap")
				requireBundle(t, other, doc)
			} else {
				require.Error(t, err, "the total cap holds for every client")
			}

			// Closing one connection makes room for a new one.
			closeAndWait(t, held[0])
			conn, err := dialTLS(t.Context(), addr, clientA)
			require.NoError(t, err, "a closed connection gives its place back")
			requireBundle(t, conn, doc)
			// The held connections still work.
			requireBundle(t, held[len(held)-1], doc)
		})
	}
}

func TestClientOf(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		want string
	}{
		{"ok/ipv4", &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 443}, "192.0.2.7"},
		{"ok/ipv4-mapped ipv6 is the ipv4 client", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 443}, "192.0.2.7"},
		{"ok/ipv6 counts by /64", &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 443}, "2001:db8:1:2::"},
		{"ok/ipv6 zone dropped", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 443}, "fe80::"},
		{"ok/other address types", &net.UnixAddr{Name: "@sock", Net: "unix"}, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, clientOf(tt.addr).String())
			if _, ok := tt.addr.(*net.TCPAddr); ok {
				require.Equal(t, tt.want, clientOfRemote(tt.addr.String()).String(), "a request's RemoteAddr counts the same")
			}
		})
	}
}

func TestRefusalLog(t *testing.T) {
	now := time.Unix(1000, 0)
	logs := &lockedBuffer{}
	r := newRefusalLog(slog.New(slog.NewTextHandler(logs, nil)), func() time.Time { return now }, 2, 10)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	r.note(a, false)
	r.note(a, false)
	r.note(b, false)
	r.note(a, true)
	r.note(b, true)
	require.Equal(t, 2, strings.Count(logs.String(), "client at its connection limit"), "once per client")
	require.Equal(t, 1, strings.Count(logs.String(), "total connection limit"), "once for the total cap")
	now = now.Add(refusalLogInterval)
	r.note(a, false)
	require.Contains(t, logs.String(), "client=192.0.2.1 limit=2 refused=2", "a minute later, with the refusals in between")
}

// addrOf is the host:port of an endpoint URL returned by serve.
func addrOf(url string) string {
	return strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/")
}

// dialTLS connects to addr from the loopback address local and completes
// a TLS handshake for HTTP/1.1, within 5 seconds.
func dialTLS(ctx context.Context, addr, local string) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := &tls.Dialer{
		NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}},
		Config:    &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}, //nolint:gosec // only the limits are under test
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

// canBind reports whether a dial error is something other than the local
// address being unusable (127.0.0.2 is not loopback everywhere).
func canBind(err error) bool {
	return !errors.Is(err, syscall.EADDRNOTAVAIL)
}

// requireBundle sends GET / on conn and requires the bundle back.
func requireBundle(t *testing.T, conn net.Conn, doc []byte) {
	t.Helper()
	resp, body := roundTrip(t, conn, "GET / HTTP/1.1\r\nHost: endpoint\r\n\r\n")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, string(doc), body)
}

// roundTrip writes a raw HTTP/1.1 request on conn and reads the response,
// within 5 seconds.
// reply is an HTTP/1.1 response read off a raw connection, body read and
// closed.
type reply struct {
	StatusCode int
	Header     http.Header
}

func roundTrip(t *testing.T, conn net.Conn, raw string) (reply, string) {
	t.Helper()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := io.WriteString(conn, raw)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{StatusCode: resp.StatusCode, Header: resp.Header}, string(body)
}

// closeAndWait half-closes conn and waits, at most 5 seconds, for the
// server to close its side: by then its place is given back.
func closeAndWait(t testing.TB, conn *tls.Conn) {
	t.Helper()
	require.NoError(t, conn.CloseWrite())
	require.NoError(t, waitTCPClosed(conn, 5*time.Second), "the server closes a connection whose client has")
	_ = conn.Close()
}

// waitTCPClosed reads conn until the server has closed the TCP
// connection, not just TLS: the server sends close_notify before it closes
// the connection and gives its place back.
func waitTCPClosed(conn *tls.Conn, d time.Duration) error {
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, conn.NetConn())
	return err
}

// lockedBuffer is a buffer a logger or a process may write while the test reads it.
type lockedBuffer = syncbuf.Buffer

// TestRateLimitFlood sends requests from three times as many addresses as
// the limiter tracks, all at one instant: the table must stay bounded, the
// newcomers share one bucket, and it must not sweep the table for each of
// them (that took 11 s for 30,000 addresses, under the lock every request
// takes).
func TestRateLimitFlood(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(1, func() time.Time { return now })
	client := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(i >> 8), 7: byte(i)}) // one /64 each
	}
	start := time.Now()
	allowed := 0
	for i := range 3 * maxTrackedClients {
		if l.allow(client(i)) {
			allowed++
		}
	}
	elapsed := time.Since(start)
	require.LessOrEqual(t, len(l.buckets), maxTrackedClients+1, "tracked clients, the shared bucket included")
	require.Equal(t, maxTrackedClients+1, allowed, "each tracked client its burst, the newcomers one between them")
	require.Less(t, elapsed, 2*time.Second, "no sweep per request")

	// A second later, the idle clients are forgotten: newcomers get their
	// own buckets again.
	now = now.Add(time.Second)
	require.True(t, l.allow(client(3*maxTrackedClients)))
	require.True(t, l.allow(client(3*maxTrackedClients+1)))
	require.Less(t, len(l.buckets), maxTrackedClients)
}
