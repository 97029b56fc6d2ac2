package bundleendpoint

import (
	"context"
	"errors"
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

// staticSource is a Source whose bundle the test sets.
type staticSource struct {
	doc []byte
	seq uint64
}

func (s *staticSource) Document() ([]byte, uint64) { return s.doc, s.seq }
func (s *staticSource) Changed() <-chan struct{}   { return nil }

// With Confirm, an answer carries the bundle the confirmation brought in
// (a replica hearing of another's commit), and never one with a lower
// sequence than it served before; when the confirmation fails, it serves
// what it has.
func TestConfirmBeforeAnswering(t *testing.T) {
	src := &staticSource{doc: []byte(`{"seq":5}`), seq: 5}
	var confirmErr error
	h := &handler{source: src, confirm: func(context.Context) error {
		if confirmErr == nil {
			src.doc, src.seq = []byte(`{"seq":6}`), 6 // what the store holds now
		}
		return confirmErr
	}}
	h.current.Store(newResponse([]byte(`{"seq":5}`), 5))
	get := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		return rec.Body.String()
	}
	require.JSONEq(t, `{"seq":6}`, get(), "the first answer already carries the newer bundle")

	src.doc, src.seq = []byte(`{"seq":4}`), 4
	confirmErr = errors.New("store down")
	require.JSONEq(t, `{"seq":6}`, get(), "a failed confirmation serves what it has")
	confirmErr = nil
	src.doc, src.seq = []byte(`{"seq":4}`), 4
	h.confirm = func(context.Context) error { return nil }
	require.JSONEq(t, `{"seq":6}`, get(), "never a lower sequence")
}
