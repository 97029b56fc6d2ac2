package bundleendpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// response is the pre-serialised answer for one version of the bundle.
type response struct {
	body   []byte
	etag   string
	length string
}

func newResponse(doc []byte, seq uint64) *response {
	sum := sha256.Sum256(doc)
	return &response{
		body:   doc,
		etag:   fmt.Sprintf(`"%d-%s"`, seq, hex.EncodeToString(sum[:8])),
		length: strconv.Itoa(len(doc)),
	}
}

// handler serves the bundle at "/" (SPIFFE Trust Domain and Bundle standard,
// section 5): GET and HEAD only, the same bytes until the bundle changes,
// and 304 for a matching If-None-Match.
type handler struct {
	current atomic.Pointer[response]
	limiter *limiter                        // nil: no rate limit
	observe func(code int, d time.Duration) // nil: not measured
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.observe == nil {
		h.serve(w, r)
		return
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	h.serve(rec, r)
	h.observe(rec.code, time.Since(start))
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.Error(w, "not found: the bundle is served at /", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.limiter != nil && !h.limiter.allow(clientIP(r)) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	resp := h.current.Load()
	hdr := w.Header()
	hdr.Set("ETag", resp.etag)
	hdr.Set("Cache-Control", "no-cache")
	if etagMatches(r.Header.Get("If-None-Match"), resp.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", resp.length)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(resp.body)
	}
}

// etagMatches implements the weak comparison of RFC 9110, section 13.1.2.
func etagMatches(header, etag string) bool {
	for candidate := range strings.SplitSeq(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == etag || candidate == "*" {
			return true
		}
	}
	return false
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
