package bundleendpoint

import (
	"net/http"
	"net/http/httptest"
	"testing"
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
