package bundleendpoint

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
)

// BenchmarkServe measures the handler alone: what treaty adds on top of
// net/http and TLS for each request.
func BenchmarkServe(b *testing.B) {
	h := &handler{}
	h.current.Store(newResponse([]byte(`{"keys":[]}`), 1))
	req := httptest.NewRequestWithContext(b.Context(), http.MethodGet, "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

// BenchmarkIdleConnection measures the memory an idle HTTP/2 connection
// holds: per connection, the heap and stacks in use after 256 clients have
// each sent the preface, SETTINGS and a PING, and optionally one ignored
// frame first (a client making the server read, and keep, a large frame
// buffer). Server and client share the process, so the figure includes
// the client's side of TLS (a few KB). Run it with
//
//	go test -run '^$' -bench IdleConnection -benchtime 3x ./internal/bundleendpoint/
//
// Measured (Go 1.26, amd64): about 40 KB idle and 60-65 KB after a 16 KiB
// frame. With net/http's HTTP/2 defaults a 1 MiB frame, which the endpoint
// now refuses, left a connection holding 1.09 MB.
func BenchmarkIdleConnection(b *testing.B) {
	for _, frame := range []int{0, http2MaxReadFrameSize} {
		b.Run(fmt.Sprintf("frame=%d", frame), func(b *testing.B) {
			c := newCA(b)
			_, url := serve(b, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c,
				MaxConnsPerClient: 1024, MaxConns: 1024})
			var total float64
			for b.Loop() {
				total += idleConnBytes(b, addrOf(url), 256, frame)
			}
			b.ReportMetric(total/float64(b.N), "B/conn")
		})
	}
}

func idleConnBytes(b *testing.B, addr string, n, frame int) float64 {
	before := memInUse()
	conns := make([]*h2Conn, n)
	for i := range conns {
		conns[i] = dialH2(b, addr)
		if frame > 0 {
			conns[i].write(b, h2Frame(frameUnknown, 0, 0, make([]byte, frame)))
		}
		require.NoError(b, conns[i].ping(b))
	}
	used := float64(memInUse()-before) / float64(n)
	for _, conn := range conns {
		// Wait for the server to close each one, so that the next round
		// starts from an idle server.
		closeAndWait(b, conn.Conn)
	}
	return used
}

func memInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
