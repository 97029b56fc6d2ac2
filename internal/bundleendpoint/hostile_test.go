package bundleendpoint

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
)

// Timeouts of the strict endpoint, short so that the slow attacks end fast.
const (
	strictReadHeaderTimeout = 300 * time.Millisecond
	strictIdleTimeout       = 600 * time.Millisecond
)

// marker is sent by attacks that hope to see their input echoed.
const marker = "treaty-echo-probe"

// TestHostileClients attacks running endpoints the way a scanner or a
// denial-of-service script would, and after every attack requires a
// well-behaved partner to still get the bundle. The strict endpoint has
// short timeouts, for the slow attacks; the patient one the defaults, to
// tell "closed at once" from "closed at the timeout".
func TestHostileClients(t *testing.T) {
	c := newCA(t)
	_, strictURL := serve(t, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c,
		ReadHeaderTimeout: strictReadHeaderTimeout, IdleTimeout: strictIdleTimeout})
	_, patientURL := serve(t, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c})
	goodPartner := func(t *testing.T, url string) {
		t.Helper()
		got, err := federation.FetchBundle(t.Context(), td, url, federation.WithSPIFFEAuth(c.Bundle(), endpointID))
		require.NoError(t, err, "a good partner must still get the bundle")
		require.True(t, got.Equal(c.Bundle()))
	}

	tests := []struct {
		name   string
		strict bool
		attack func(t *testing.T, addr string, goodPartner func(*testing.T))
	}{
		{"fail/slow header cut at the read header timeout", true, slowHeader},
		{"fail/slow http2 headers cut at the idle timeout", true, slowHTTP2Headers},
		{"fail/half-open tls handshakes closed at the handshake timeout", true, halfOpenHandshakes},
		{"fail/oversized header gets 431", false, oversizedHeader},
		{"fail/oversized http2 header list gets 431", false, oversizedHTTP2Headers},
		{"fail/request line over the header limit gets 431", false, longRequestLine},
		{"fail/other methods get 405 without echo", false, otherMethods},
		{"fail/other methods over http2 get 405 without echo", false, otherMethodsHTTP2},
		{"fail/other paths get 404 without echo", false, otherPaths},
		{"fail/garbage instead of a client hello closed at once", false, garbageHello},
		{"fail/plain http to the tls port gets 400", false, plainHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := patientURL
			if tt.strict {
				url = strictURL
			}
			good := func(t *testing.T) { t.Helper(); goodPartner(t, url) }
			tt.attack(t, addrOf(url), good)
			good(t)
		})
	}
}

// slowHeader sends a request's headers a byte at a time, never finishing
// (slowloris): the server must close the connection at its read header
// timeout, without answering.
func slowHeader(t *testing.T, addr string, _ func(*testing.T)) {
	conn := dialH1(t, addr)
	start := time.Now()
	_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: endpoint\r\n")
	require.NoError(t, err)
	stop := dribble(conn, []byte("X-Slow: "+strings.Repeat("a", 1000)))
	defer stop()
	n, err := readUntilClosed(conn, 5*time.Second)
	require.NoError(t, err, "the server must close the connection")
	require.Zero(t, n, "and answer nothing")
	require.GreaterOrEqual(t, time.Since(start), strictReadHeaderTimeout*9/10, "not before the timeout: the bytes kept coming")
}

// slowHTTP2Headers opens an HTTP/2 stream whose header block never ends:
// HEADERS without END_HEADERS, then a CONTINUATION a byte at a time. No
// stream is open until the block ends, so the idle timeout closes it.
func slowHTTP2Headers(t *testing.T, addr string, _ func(*testing.T)) {
	conn := dialH2(t, addr)
	defer conn.Close()
	start := time.Now()
	conn.write(t, h2Frame(frameHeaders, 0, 1, requestHeaderBlock("GET", "/")))
	stop := dribbleFrames(conn, frameContinuation, 1, literalField("x-slow", "a"))
	defer stop()
	goAway, err := conn.waitClosed(5 * time.Second)
	require.NoError(t, err, "the server must close the connection")
	require.NotNil(t, goAway, "with a GOAWAY")
	require.GreaterOrEqual(t, time.Since(start), strictIdleTimeout*9/10)
}

// halfOpenHandshakes opens many connections that never finish their TLS
// handshake, some silent, some stopping inside the ClientHello. They must
// not keep good partners out, and each must be closed at the handshake
// timeout.
func halfOpenHandshakes(t *testing.T, addr string, goodPartner func(*testing.T)) {
	const n = 32
	conns := make([]net.Conn, n)
	start := time.Now()
	for i := range conns {
		conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		if i%2 == 1 {
			// A handshake record announcing 512 bytes, with 5 of them.
			_, err = conn.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03})
			require.NoError(t, err)
		}
		conns[i] = conn
	}
	goodPartner(t)
	for i, conn := range conns {
		_, err := readUntilClosed(conn, 5*time.Second)
		require.NoError(t, err, "half-open connection %d must be closed", i)
	}
	require.GreaterOrEqual(t, time.Since(start), strictReadHeaderTimeout*9/10)
}

// oversizedHeader sends 32 KB of one header, twice the limit.
func oversizedHeader(t *testing.T, addr string, _ func(*testing.T)) {
	resp, body := roundTrip(t, dialH1(t, addr), "GET / HTTP/1.1\r\nHost: endpoint\r\nX-Big: "+strings.Repeat(marker, 2<<10)+"\r\n\r\n")
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	require.NotContains(t, body, marker)
}

// longRequestLine asks for a 34 KB path: the request line counts against
// the header limit.
func longRequestLine(t *testing.T, addr string, _ func(*testing.T)) {
	resp, body := roundTrip(t, dialH1(t, addr), "GET /"+strings.Repeat(marker, 2<<10)+" HTTP/1.1\r\nHost: endpoint\r\n\r\n")
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	require.NotContains(t, body, marker)
}

// oversizedHTTP2Headers sends header lists over the limit the server
// announced, in HEADERS and CONTINUATION frames within the frame size
// limit (Go's own client would refuse to send them). Fields of 1 KB adding
// up to more than the limit get a 431; one field longer than the whole
// limit is a decoding error that closes the connection.
func oversizedHTTP2Headers(t *testing.T, addr string, _ func(*testing.T)) {
	send := func(conn *h2Conn, fieldSize int) {
		limit := int(conn.settings[settingMaxHeaderListSize])
		require.NotZero(t, limit, "the server announces its header list limit")
		block := requestHeaderBlock("GET", "/"+marker)
		// RFC 9113, section 6.5.2: a field counts its name, value and 32.
		for size := 0; size <= limit; size += fieldSize + 32 {
			block = append(block, literalField("x-big", strings.Repeat("v", fieldSize-len("x-big")))...)
		}
		first, rest := block[:http2MaxReadFrameSize], block[http2MaxReadFrameSize:]
		conn.write(t, h2Frame(frameHeaders, flagEndStream, 1, first))
		for len(rest) > http2MaxReadFrameSize {
			conn.write(t, h2Frame(frameContinuation, 0, 1, rest[:http2MaxReadFrameSize]))
			rest = rest[http2MaxReadFrameSize:]
		}
		conn.write(t, h2Frame(frameContinuation, flagEndHeaders, 1, rest))
	}

	conn := dialH2(t, addr)
	defer conn.Close()
	send(conn, 1<<10)
	body := readStreamBody(t, conn, 1)
	require.Contains(t, body, "431", "many fields: 431")
	require.NotContains(t, body, marker)
	require.NoError(t, conn.ping(t), "and the connection goes on")

	conn = dialH2(t, addr)
	defer conn.Close()
	send(conn, 32<<10)
	goAway, err := conn.waitClosed(5 * time.Second)
	require.NoError(t, err, "one huge field: the connection is closed")
	require.NotNil(t, goAway)
}

// otherMethods tries every method but GET and HEAD, each with a body that
// must not come back.
func otherMethods(t *testing.T, addr string, _ func(*testing.T)) {
	requests := map[string]string{
		"OPTIONS *": "OPTIONS * HTTP/1.1\r\nHost: endpoint\r\n\r\n",
		"CONNECT":   "CONNECT endpoint:443 HTTP/1.1\r\nHost: endpoint:443\r\n\r\n",
	}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "BREW"} {
		requests[m] = m + " / HTTP/1.1\r\nHost: endpoint\r\nContent-Length: 17\r\n\r\n" + marker
	}
	for name, raw := range requests {
		resp, body := roundTrip(t, dialH1(t, addr), raw)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, name)
		require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"), name)
		require.Equal(t, "method not allowed\n", body, name)
	}
}

// otherMethodsHTTP2 is otherMethods through Go's HTTP/2 client.
func otherMethodsHTTP2(t *testing.T, addr string, _ func(*testing.T)) {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the methods are under test, not the certificate
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"} {
		req, err := http.NewRequestWithContext(t.Context(), m, "https://"+addr+"/", strings.NewReader(marker))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err, m)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, 2, resp.ProtoMajor, m)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, m)
		require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"), m)
		require.Equal(t, "method not allowed\n", string(body), m)
	}
}

// otherPaths asks for everything but "/": a 404 that names none of it.
func otherPaths(t *testing.T, addr string, _ func(*testing.T)) {
	for _, path := range []string{
		"/" + strings.Repeat(marker, 400), // 6.8 KB, within the header limit
		"/" + marker,
		"/.well-known/" + marker,
		"//" + marker,
		"/%2e%2e/%2e%2e/etc/" + marker,
		"/" + marker + "/",
		"/%3Cscript%3E" + marker,
		"http://" + marker + "/" + marker, // absolute form
	} {
		resp, body := roundTrip(t, dialH1(t, addr), "GET "+path+" HTTP/1.1\r\nHost: endpoint\r\n\r\n")
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
		require.Equal(t, "not found: the bundle is served at /\n", body, path)
		require.NotContains(t, strings.Join(headerValues(resp.Header), " "), marker, path)
	}
}

// garbageHello sends bytes that are no TLS record: the server must hang
// up at once, well before its 10 s handshake timeout.
func garbageHello(t *testing.T, addr string, _ func(*testing.T)) {
	conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	garbage := bytes.Repeat([]byte{0x00, 0xff, 0x13, 0x37}, 64)
	_, err = conn.Write(garbage)
	require.NoError(t, err)
	_, err = readUntilClosed(conn, 2*time.Second)
	require.NoError(t, err, "the server must hang up at once")
}

// plainHTTP speaks HTTP without TLS to the TLS port: net/http answers 400
// in plain text and hangs up.
func plainHTTP(t *testing.T, addr string, _ func(*testing.T)) {
	conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	resp, body := roundTrip(t, conn, "GET / HTTP/1.1\r\nHost: endpoint\r\n\r\n")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "HTTPS server")
	_, err = readUntilClosed(conn, 2*time.Second)
	require.NoError(t, err)
}

// dialH1 is dialTLS for HTTP/1.1 from clientA, closed at the end of the test.
func dialH1(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := dialTLS(t.Context(), addr, clientA)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// readUntilClosed reads until the peer closes the connection (EOF or a
// reset), within d, and returns how many bytes came before.
func readUntilClosed(conn net.Conn, d time.Duration) (int64, error) {
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, conn)
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return n, err
	}
	return n, nil // EOF (nil from io.Copy) or a reset: closed either way
}

// dribble writes b to conn a byte every 20 ms until stopped or a write
// fails, and returns the function that stops it and waits for it.
func dribble(conn net.Conn, b []byte) func() {
	return pace(func(i int) error {
		_, err := conn.Write(b[i%len(b) : i%len(b)+1])
		return err
	})
}

// dribbleFrames writes a frame of type typ on stream, with payload, every
// 20 ms until stopped or a write fails.
func dribbleFrames(conn *h2Conn, typ byte, stream uint32, payload []byte) func() {
	frame := h2Frame(typ, 0, stream, payload)
	return pace(func(int) error {
		_, err := conn.Write(frame)
		return err
	})
}

// pace calls write every 20 ms until stopped or it fails.
func pace(write func(i int) error) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if write(i) != nil {
					return
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// requestHeaderBlock is an HPACK block (RFC 7541) for a request to the
// endpoint: the method and path as literals, scheme and authority.
func requestHeaderBlock(method, path string) []byte {
	var b []byte
	b = append(b, literalField(":method", method)...)
	b = append(b, 0x87) // :scheme https, static table index 7
	b = append(b, literalField(":path", path)...)
	return append(b, literalField(":authority", "endpoint")...)
}

// literalField is an HPACK literal header field without indexing, with a
// new name, no Huffman coding (RFC 7541, section 6.2.2).
func literalField(name, value string) []byte {
	b := []byte{0x00}
	b = hpackString(b, name)
	return hpackString(b, value)
}

func hpackString(b []byte, s string) []byte {
	b = hpackInt(b, 7, uint64(len(s)))
	return append(b, s...)
}

// hpackInt appends an HPACK integer with an n-bit prefix (RFC 7541,
// section 5.1), the prefix's other bits zero.
func hpackInt(b []byte, n uint, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(b, byte(v))
	}
	b = append(b, byte(limit))
	for v -= limit; v >= 128; v >>= 7 {
		b = append(b, byte(v&0x7f|0x80))
	}
	return append(b, byte(v))
}

// readStreamBody reads frames until stream ends and returns its DATA.
func readStreamBody(t *testing.T, conn *h2Conn, stream uint32) string {
	t.Helper()
	var body strings.Builder
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := conn.readFrame(time.Until(deadline))
		require.NoError(t, err)
		if f.stream != stream {
			continue
		}
		require.NotEqual(t, byte(frameRSTStream), f.typ, "stream reset")
		if f.typ == frameData {
			body.Write(f.payload)
		}
		if (f.typ == frameData || f.typ == frameHeaders) && f.flags&flagEndStream != 0 {
			return body.String()
		}
	}
}

func headerValues(h http.Header) []string {
	var all []string
	for k, v := range h {
		all = append(all, k)
		all = append(all, v...)
	}
	return all
}
