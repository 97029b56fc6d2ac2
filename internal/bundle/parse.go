package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/finding"
)

// MaxRefreshHint is the longest refresh hint Parse accepts without a
// warning: with a longer one a partner misses rotations.
const MaxRefreshHint = 24 * time.Hour

// Options tune Parse.
type Options struct {
	// RequireKeys makes a bundle without usable keys an error. The standard
	// allows an empty set (the trust domain revoked everything), but a
	// bootstrap bundle without keys can authenticate nothing.
	RequireKeys bool
	// Now is the time used to report expired authorities; zero means
	// time.Now().
	Now time.Time
}

// Result is a parsed bundle, the warnings about what Parse found odd, and
// the entries it ignored.
type Result struct {
	Bundle *spiffebundle.Bundle
	// Warnings are for people; every ignored entry has one too.
	Warnings []string
	// Ignored lists the JWK elements (or PEM blocks) left out of Bundle.
	Ignored []Ignored
	// Entries is the number of elements of "keys" (or PEM blocks) read.
	Entries int
	// Findings are the warnings and ignored entries again, each tagged
	// with its check.
	Findings []finding.Finding
}

// EffectivelyEmpty reports whether the document had entries but none was
// usable. SPIFFE Trust Domain and Bundle §4.1.3 treats such a bundle like
// an empty one: every SVID of the trust domain is untrusted.
func (r *Result) EffectivelyEmpty() bool {
	return r.Entries > 0 && r.Bundle.Empty()
}

// Error lists every problem that made a document unusable as a whole.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "invalid bundle: " + e.Problems[0]
	}
	return fmt.Sprintf("invalid bundle, %d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// parser collects problems, warnings and ignored entries while decoding
// one document.
type parser struct {
	td       spiffeid.TrustDomain
	opts     Options
	problems []string
	warnings []string
	findings []finding.Finding
	ignored  []Ignored
	entries  int
	bundle   *spiffebundle.Bundle
	// jwtEntries maps each JWT key ID added to the entry it came from;
	// ambiguous holds key IDs that named different keys.
	jwtEntries map[string]entry
	ambiguous  map[string]bool
}

func newParser(td spiffeid.TrustDomain, opts Options) *parser {
	p := &parser{td: td, opts: opts, bundle: spiffebundle.New(td), jwtEntries: map[string]entry{}, ambiguous: map[string]bool{}}
	if p.opts.Now.IsZero() {
		p.opts.Now = time.Now()
	}
	return p
}

// problem records what makes the whole document unusable.
func (p *parser) problem(check finding.CheckID, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.problems = append(p.problems, msg)
	p.findings = append(p.findings, finding.Finding{Check: check, Severity: finding.Fail, Message: msg})
}

func (p *parser) warn(check finding.CheckID, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.warnings = append(p.warnings, msg)
	p.findings = append(p.findings, finding.Finding{Check: check, Severity: finding.Warn, Message: msg})
}

// ignore records an entry left out of the bundle. An entry the standard
// tells clients to skip (unknown kty or use) is a warning; a malformed one
// is a failure of the publisher's bundle, though the rest of it stands.
func (p *parser) ignore(e entry, check finding.CheckID, severity finding.Severity, format string, args ...any) {
	ig := Ignored{Index: e.index, Use: e.use, KeyID: e.kid, Check: check, Severity: severity, Message: e.where() + " ignored: " + fmt.Sprintf(format, args...)}
	p.ignored = append(p.ignored, ig)
	p.warnings = append(p.warnings, ig.Message)
	p.findings = append(p.findings, finding.Finding{Check: check, Severity: severity, Message: ig.Message})
}

func (p *parser) result() (*Result, error) {
	res := &Result{Bundle: p.bundle, Warnings: p.warnings, Ignored: p.ignored, Entries: p.entries, Findings: p.findings}
	if p.opts.RequireKeys && len(p.problems) == 0 && p.bundle.Empty() {
		p.noUsableKeys()
	}
	if len(p.problems) > 0 {
		return nil, &Error{Problems: p.problems}
	}
	return res, nil
}

// noUsableKeys refuses a bundle that can authenticate nothing, listing
// why each entry was ignored.
func (p *parser) noUsableKeys() {
	if p.entries == 0 {
		p.problem(CheckKeys, "the bundle has no usable keys: it needs at least one x509-svid or jwt-svid authority")
		return
	}
	reasons := make([]string, len(p.ignored))
	for i, ig := range p.ignored {
		reasons[i] = ig.Message
	}
	p.problem(CheckKeys, "the bundle has no usable keys: all %d of its entries were ignored (%s)", p.entries, strings.Join(reasons, "; "))
}

// Parse decodes a SPIFFE bundle for trust domain td, entry by entry, as
// SPIFFE Trust Domain and Bundle §4 and the SVID standards' §6.2 require
// of clients: unknown members are skipped; a JWK element with an unknown
// key type or use, or one that is malformed, is ignored on its own and
// reported in Result.Ignored, and the rest of the bundle stands. Only a
// document that is unusable as a whole (not a JWK Set, over the limits)
// is an *Error, with every problem listed.
func Parse(td spiffeid.TrustDomain, data []byte, opts Options) (*Result, error) {
	p := newParser(td, opts)
	p.parseJSON(data)
	return p.result()
}

// fits refuses a document over MaxDocumentBytes before anything reads it.
func (p *parser) fits(data []byte) bool {
	if len(data) > MaxDocumentBytes {
		p.problem(CheckFormat, "the document is %d bytes, over the limit of %d (1 MiB); a trust domain's bundle holds a handful of authorities", len(data), MaxDocumentBytes)
		return false
	}
	return true
}

func (p *parser) parseJSON(data []byte) {
	if !p.fits(data) {
		return
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		p.problem(CheckFormat, "not a JSON object: %s%s", jsonError(data, err), htmlHint(data))
		return
	}
	p.topLevel(members)
}

func (p *parser) topLevel(members map[string]json.RawMessage) {
	for name := range members {
		switch name {
		case "keys", "spiffe_refresh_hint", "spiffe_sequence":
		case "spiffe_sequence_number":
			p.warn(CheckSequence, `member "spiffe_sequence_number" is not part of the standard and is ignored; the sequence member is "spiffe_sequence"`)
		default:
			p.warn(CheckMembers, "unknown member %q ignored", name)
		}
	}
	p.refreshHint(members["spiffe_refresh_hint"])
	p.sequence(members["spiffe_sequence"])
	raw, ok := members["keys"]
	if !ok {
		p.problem(CheckKeys, `no "keys" member: a SPIFFE bundle is a JWK Set, {"keys": [...]} (SPIFFE Trust Domain and Bundle §4.1.3)`)
		return
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil || keys == nil {
		p.problem(CheckKeys, `"keys" must be an array of JWKs`)
		return
	}
	if len(keys) > MaxKeys {
		p.problem(CheckKeys, "the bundle has %d keys, over the limit of %d; a trust domain publishes a handful of authorities", len(keys), MaxKeys)
		return
	}
	p.entries = len(keys)
	for i, key := range keys {
		p.key(i, key)
	}
}

// maxHintSeconds is the longest refresh hint a time.Duration can hold.
const maxHintSeconds = math.MaxInt64 / int64(time.Second)

func (p *parser) refreshHint(raw json.RawMessage) {
	if raw == nil {
		return
	}
	var secs int64
	if err := json.Unmarshal(raw, &secs); err != nil || secs < 0 || secs > maxHintSeconds {
		p.warn(CheckRefreshHint, "spiffe_refresh_hint %s is not a non-negative whole number of seconds; ignored", raw)
		return
	}
	hint := time.Duration(secs) * time.Second
	switch {
	case hint > MaxRefreshHint && looksLikeMilliseconds(secs):
		p.warn(CheckRefreshHint, "spiffe_refresh_hint is %d: that is %s in seconds, which the standard uses, but looks like milliseconds (%s); partners will poll far too rarely", secs, hint, time.Duration(secs)*time.Millisecond)
	case hint > MaxRefreshHint:
		p.warn(CheckRefreshHint, "spiffe_refresh_hint is %s (%d seconds): partners polling that rarely will miss CA rotations; was it meant to be minutes?", hint, secs)
	}
	p.bundle.SetRefreshHint(hint)
}

// looksLikeMilliseconds reports whether a refresh hint is more plausibly
// milliseconds: a whole number of minutes when read as milliseconds, but
// not a whole number of hours when read as seconds.
func looksLikeMilliseconds(secs int64) bool {
	ms := time.Duration(secs) * time.Millisecond
	return ms <= MaxRefreshHint && ms%time.Minute == 0 && (time.Duration(secs)*time.Second)%time.Hour != 0
}

// sequence reads spiffe_sequence as an unsigned 64-bit integer, straight
// from its digits: SPIFFE Trust Domain and Bundle §4.1.1 asks for at least
// 64 bits of precision, which a float64 does not have.
func (p *parser) sequence(raw json.RawMessage) {
	if raw == nil {
		return
	}
	var seq uint64
	if err := json.Unmarshal(raw, &seq); err != nil {
		p.warn(CheckSequence, "spiffe_sequence %s is not a whole number from 0 to 2^64-1; ignored", raw)
		return
	}
	p.bundle.SetSequenceNumber(seq)
}

func jsonError(data []byte, err error) string {
	if syntax, ok := errors.AsType[*json.SyntaxError](err); ok {
		line := 1 + bytes.Count(data[:min(int(syntax.Offset), len(data))], []byte("\n"))
		return fmt.Sprintf("%v (line %d)", err, line)
	}
	return err.Error()
}

func htmlHint(data []byte) string {
	trimmed := strings.ToLower(strings.TrimSpace(string(data[:min(len(data), 512)])))
	switch {
	case strings.HasPrefix(trimmed, "<!doctype html") || strings.HasPrefix(trimmed, "<html"):
		return "; this looks like an HTML page, not a bundle (an error page or a login page?)"
	case strings.HasPrefix(trimmed, "-----begin"):
		return "; this looks like PEM: use -format pem"
	}
	return ""
}

func jsonHint(data []byte) string {
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		return "; this looks like JSON: use -format spiffe"
	}
	return ""
}
