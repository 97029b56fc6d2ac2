package bundleendpoint

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestObserve(t *testing.T) {
	now := time.Unix(1000, 0)
	var codes []int
	h := &handler{
		limiter: newLimiter(1, func() time.Time { return now }),
		observe: func(code int, d time.Duration) {
			require.GreaterOrEqual(t, d, time.Duration(0))
			codes = append(codes, code)
		},
	}
	h.current.Store(newResponse([]byte(`{"keys":[]}`), 7))
	etag := h.current.Load().etag
	tests := []struct {
		name        string
		method      string
		path        string
		ifNoneMatch string
		after       time.Duration // since the previous request: 1 s brings the limiter's token back
		code        int
	}{
		{"ok/get", http.MethodGet, "/", "", time.Second, http.StatusOK},
		{"ok/not modified", http.MethodGet, "/", etag, time.Second, http.StatusNotModified},
		{"fail/rate limited", http.MethodGet, "/", "", 0, http.StatusTooManyRequests},
		{"fail/other path", http.MethodGet, "/bundle", "", 0, http.StatusNotFound},
		{"fail/other method", http.MethodPut, "/", "", 0, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			codes = nil
			now = now.Add(tt.after)
			req := httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, nil)
			if tt.ifNoneMatch != "" {
				req.Header.Set("If-None-Match", tt.ifNoneMatch)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tt.code, rec.Code)
			require.Equal(t, []int{tt.code}, codes, "observed as answered")
		})
	}
}
