package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// pipeNetwork is an in-memory network for a synctest bubble: the fetcher
// dials it and a server accepts from it over net.Pipe, so that a stalled
// peer blocks durably and the bubble's fake clock runs the timeouts.
type pipeNetwork struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeNetwork() *pipeNetwork {
	return &pipeNetwork{conns: make(chan net.Conn), done: make(chan struct{})}
}

// DialContext hands the server end of a new pipe to Accept.
func (n *pipeNetwork) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case n.conns <- server:
		return client, nil
	case <-n.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Accept implements net.Listener.
func (n *pipeNetwork) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (n *pipeNetwork) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}

// Addr implements net.Listener.
func (n *pipeNetwork) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }

// pipeFetcher returns a fetcher whose https_web client dials n.
func pipeFetcher(t *testing.T, cfg FetcherConfig, n *pipeNetwork) *Fetcher {
	f := NewFetcher(cfg)
	f.web.Transport.(*http.Transport).DialContext = n.DialContext
	t.Cleanup(f.Close)
	return f
}

// serveHTTPS serves h over TLS with cert on n until the test ends. A pipe
// has no buffer, so the server speaks TLS 1.2 without session tickets:
// in TLS 1.3 the client writes its ChangeCipherSpec while the server
// writes its flight, and both would wait forever.
func serveHTTPS(t *testing.T, n *pipeNetwork, cert tls.Certificate, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, SessionTicketsDisabled: true}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(n, "", "")
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// holdConnections accepts connections on n and never answers them until
// the test ends.
func holdConnections(t *testing.T, n *pipeNetwork) {
	done := make(chan struct{})
	var held []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := n.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		_ = n.Close()
		<-done
		for _, c := range held {
			_ = c.Close()
		}
	})
}

// stall is a handler that answers with status and part of a body, or
// with nothing when headers is false, then waits until the test ends.
func stall(t *testing.T, headers bool) http.HandlerFunc {
	stop := stopOnCleanup(t)
	return func(w http.ResponseWriter, _ *http.Request) {
		if headers {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[`))
			w.(http.Flusher).Flush()
		}
		<-stop
	}
}

// TestFetchTimeLimits measures on the fake clock of a synctest bubble
// that each limit ends a stalled fetch exactly when it should, whatever
// the load on the machine, and that nothing is left running afterwards
// (the bubble fails on a goroutine that outlives it).
func TestFetchTimeLimits(t *testing.T) {
	serve := func(headers bool) func(t *testing.T, n *pipeNetwork, cert tls.Certificate) {
		return func(t *testing.T, n *pipeNetwork, cert tls.Certificate) { serveHTTPS(t, n, cert, stall(t, headers)) }
	}
	hold := func(t *testing.T, n *pipeNetwork, _ tls.Certificate) { holdConnections(t, n) }
	cases := []struct {
		name    string
		cfg     FetcherConfig
		ctx     time.Duration // the caller's deadline; zero means none, negative a cancel at want
		peer    func(t *testing.T, n *pipeNetwork, cert tls.Certificate)
		want    time.Duration
		reason  Reason
		phrases []string
	}{
		{
			name: "fail/handshake hangs past the handshake limit", cfg: FetcherConfig{TLSHandshakeTimeout: 200 * time.Millisecond, Timeout: 2 * time.Second},
			peer: hold, want: 200 * time.Millisecond, reason: ReasonTimeout,
			phrases: []string{"in the TLS handshake", "limit 200ms"},
		},
		{
			name: "fail/handshake hangs past the default limit",
			peer: hold, want: DefaultTLSHandshakeTimeout, reason: ReasonTimeout,
			phrases: []string{"in the TLS handshake", "limit 5s"},
		},
		{
			name: "fail/no response headers", cfg: FetcherConfig{Timeout: 300 * time.Millisecond},
			peer: serve(false), want: 300 * time.Millisecond, reason: ReasonTimeout,
			phrases: []string{"waiting for the response", "limit 300ms", "too slow"},
		},
		{
			name: "fail/slow body past the default limit",
			peer: serve(true), want: DefaultFetchTimeout, reason: ReasonTimeout,
			phrases: []string{"reading the response body", "limit 15s"},
		},
		{
			name: "fail/the caller's deadline comes first", cfg: FetcherConfig{Timeout: 10 * time.Second}, ctx: 700 * time.Millisecond,
			peer: serve(true), want: 700 * time.Millisecond, reason: ReasonTimeout,
			phrases: []string{"reading the response body"},
		},
		{
			name: "fail/the caller cancels", ctx: -1,
			peer: serve(true), want: time.Second, reason: ReasonCanceled,
			phrases: []string{"the fetch was cancelled"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// The bubble's clock starts in 2000: certificates are made
				// inside it to be valid then.
				web := newWebCA(t, "Test Web CA")
				n := newPipeNetwork()
				t.Cleanup(func() { _ = n.Close() })
				tc.peer(t, n, web.localhost(t))
				cfg := tc.cfg
				cfg.RootCAs = web.pool
				f := pipeFetcher(t, cfg, n)
				ctx, cancel := callerContext(t, tc.ctx, tc.want)
				defer cancel()
				start := time.Now()
				_, err := f.Fetch(ctx, webRelationship(), mustURL(t, "https://127.0.0.1/"), nil)
				require.Equal(t, tc.want, time.Since(start), "error: %v", err)
				fe, ok := errors.AsType[*FetchError](err)
				require.True(t, ok, "want a *FetchError, got %T: %v", err, err)
				require.Equal(t, tc.reason, fe.Reason, "error: %v", err)
				for _, phrase := range tc.phrases {
					require.Contains(t, err.Error(), phrase)
				}
			})
		})
	}
}

// callerContext is the context a case fetches with: a deadline d after
// now, or, for d < 0, one cancelled at cancelAt.
func callerContext(t *testing.T, d, cancelAt time.Duration) (context.Context, context.CancelFunc) {
	switch {
	case d > 0:
		return context.WithTimeout(t.Context(), d)
	case d < 0:
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(cancelAt, cancel)
		return ctx, cancel
	}
	return context.WithCancel(t.Context())
}
