package bundleendpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// response is the pre-serialised answer for one version of the bundle,
// headers included, so that serving it allocates nothing of its own.
type response struct {
	seq    uint64
	body   []byte
	etag   string
	length string
	// Header values, shared by every request: net/http only reads them.
	etagValue, lengthValue []string
}

// Header values that never change.
var (
	noCache  = []string{"no-cache"}
	jsonType = []string{"application/json"}
)

func newResponse(doc []byte, seq uint64) *response {
	sum := sha256.Sum256(doc)
	r := &response{
		seq:    seq,
		body:   doc,
		etag:   fmt.Sprintf(`"%d-%s"`, seq, hex.EncodeToString(sum[:8])),
		length: strconv.Itoa(len(doc)),
	}
	r.etagValue, r.lengthValue = []string{r.etag}, []string{r.length}
	return r
}

// handler serves the bundle at "/" (SPIFFE Trust Domain and Bundle standard,
// section 5): GET and HEAD only, the same bytes until the bundle changes,
// and 304 for a matching If-None-Match.
type handler struct {
	current atomic.Pointer[response]
	limiter *limiter                        // nil: no rate limit
	observe func(code int, d time.Duration) // nil: not measured
	// confirm, when set, brings source up to date before each answer
	// (Config.Confirm).
	confirm func(ctx context.Context) error
	source  Source
	// receipts, when set, records partners' authenticated fetches.
	receipts *Receipts
}

// advance serves doc from now on if it differs from what is served, and
// reports whether it did. A document with a lower sequence than the one
// served is never taken: what is served only moves forward.
func (h *handler) advance(doc []byte, seq uint64) bool {
	for {
		cur := h.current.Load()
		if string(cur.body) == string(doc) || seq < cur.seq {
			return false
		}
		if h.current.CompareAndSwap(cur, newResponse(doc, seq)) {
			return true
		}
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.observe == nil {
		h.serve(w, r)
		return
	}
	start := time.Now()
	code := h.serve(w, r)
	h.observe(code, time.Since(start))
}

// serve answers r and returns the status code it wrote, so that observe
// needs no wrapper around w, allocated for every request, to learn it.
func (h *handler) serve(w http.ResponseWriter, r *http.Request) int {
	// The method first: CONNECT and "OPTIONS *" name no path.
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return fail(w, "method not allowed", http.StatusMethodNotAllowed)
	}
	if r.URL.Path != "/" {
		return fail(w, "not found: the bundle is served at /", http.StatusNotFound)
	}
	if h.limiter != nil && !h.limiter.allow(clientOfRemote(r.RemoteAddr)) {
		w.Header().Set("Retry-After", "1")
		return fail(w, "too many requests", http.StatusTooManyRequests)
	}
	if h.confirm != nil && h.confirm(r.Context()) == nil {
		h.advance(h.source.Document())
	}
	resp := h.current.Load()
	if h.receipts != nil && r.Method == http.MethodGet {
		h.receipts.recordRequest(r, resp.seq)
	}
	// Canonical keys assigned directly: no per-request allocation. A 304
	// carries ETag and Cache-Control too (RFC 9110, section 15.4.5).
	hdr := w.Header()
	hdr["Etag"] = resp.etagValue
	hdr["Cache-Control"] = noCache
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && etagMatches(inm[0], resp.etag) {
		w.WriteHeader(http.StatusNotModified)
		return http.StatusNotModified
	}
	hdr["Content-Type"] = jsonType
	hdr["Content-Length"] = resp.lengthValue
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(resp.body)
	}
	return http.StatusOK
}

// fail answers with http.Error and returns code.
func fail(w http.ResponseWriter, msg string, code int) int {
	http.Error(w, msg, code)
	return code
}

// etagMatches implements the weak comparison of RFC 9110, section 13.1.2.
func etagMatches(header, etag string) bool {
	if header == etag {
		return true // the usual case: the one tag a client was given
	}
	for candidate := range strings.SplitSeq(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == etag || candidate == "*" {
			return true
		}
	}
	return false
}
