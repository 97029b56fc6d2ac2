package e2e

import (
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	activeIDRe   = regexp.MustCompile(`Active X.509 authority:\n  Authority ID: ([0-9a-f]+)`)
	preparedIDRe = regexp.MustCompile(`Prepared (?:X.509|JWT) authority:\n  Authority ID: (\S+)`)
	oldIDRe      = regexp.MustCompile(`Old (?:X.509|JWT) authority:\n  Authority ID: (\S+)`)
)

// TestCrashSafety kills the server with SIGKILL while authorities rotate
// and bundles are written, over and over, and checks after every restart
// that what the server acknowledged before the kill is still there: the
// store opens, the keys match the bundle, the published sequence never
// went backwards, the active authority is the last one activated (or one
// whose activation was cut short), and the partner's bundle is held.
func TestCrashSafety(t *testing.T) {
	const rounds = 25
	s := newServer(t, "alpha.test", "")
	partnerDoc := partnerBundleFile(t)
	l := newLedger()
	for round := range rounds {
		s.start()
		l.verify(t, s, round)
		crashDuringChurn(t, s, l, func(stop <-chan struct{}) { churn(s, partnerDoc, l, stop) })
	}
	s.start()
	l.verify(t, s, rounds)
	require.GreaterOrEqual(t, l.acks, rounds, "every round acknowledged a write before its kill")
	leftovers, err := filepath.Glob(filepath.Join(s.dataDir, "keys", ".*tmp*"))
	require.NoError(t, err)
	require.Empty(t, leftovers, "temporary key files survived a restart")
}

// partnerBundleFile writes the bundle of a fresh beta.test server to a
// file, for the churn to set as a federated bundle.
func partnerBundleFile(t *testing.T) string {
	t.Helper()
	partner := newServer(t, "beta.test", "")
	partner.start()
	doc := filepath.Join(t.TempDir(), "beta.json")
	require.NoError(t, os.WriteFile(doc, []byte(partner.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	partner.stop()
	return doc
}

// crashDuringChurn runs work until the server has acknowledged a random
// number (1 to 6) of writes, then kills the server while work goes on.
// The kill waits on acknowledgements, not on a wall-clock window, so a
// busy machine makes a round slower, never emptier.
func crashDuringChurn(t *testing.T, s *server, l *ledger, work func(stop <-chan struct{})) {
	t.Helper()
	acked := l.waitAcks(1 + rand.IntN(6))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		work(stop)
	}()
	defer func() {
		s.kill()
		close(stop)
		<-done
	}()
	select {
	case <-acked:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the server acknowledged no write in 2 minutes:\n%s", s.log)
	}
}

// ledger records what the server acknowledged before a kill, and what it
// was asked that it may or may not have done when it died.
type ledger struct {
	mu sync.Mutex
	// maxSeq is the highest sequence number a bundle show returned.
	maxSeq uint64
	// active is the X.509 authority whose activation was acknowledged
	// last; inFlight are activations asked for since, unanswered.
	active   string
	inFlight map[string]bool
	// federated is set once a federated bundle write was acknowledged.
	federated bool
	// entries are the entries whose creation was acknowledged since the
	// last restart and whose deletion was not asked for.
	entries map[string]bool
	// acks counts acknowledged writes; waiting is closed when it reaches
	// target.
	acks    int
	target  int
	waiting chan struct{}
}

func newLedger() *ledger {
	return &ledger{inFlight: map[string]bool{}, entries: map[string]bool{}}
}

// waitAcks returns a channel closed after n more acknowledged writes.
func (l *ledger) waitAcks(n int) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.target, l.waiting = l.acks+n, make(chan struct{})
	return l.waiting
}

// ack counts one acknowledged write; the caller holds l.mu.
func (l *ledger) ack() {
	l.acks++
	if l.waiting != nil && l.acks >= l.target {
		close(l.waiting)
		l.waiting = nil
	}
}

func (l *ledger) sawSequence(n uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxSeq = max(l.maxSeq, n)
}

func (l *ledger) activating(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight[id] = true
}

func (l *ledger) activated(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active = id
	clear(l.inFlight)
	l.ack()
}

func (l *ledger) setFederated() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.federated = true
	l.ack()
}

func (l *ledger) created(entryID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[entryID] = true
	l.ack()
}

func (l *ledger) deleting(entryID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, entryID)
}

// verify checks, after a restart, everything acknowledged before the
// kill, and then takes what the server holds as the new baseline.
func (l *ledger) verify(t *testing.T, s *server, round int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	seq := sequence(t, parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe")))
	require.GreaterOrEqual(t, seq, l.maxSeq, "round %d: sequence went backwards", round)
	active := checkActiveIsPublished(t, s)
	if l.active != "" {
		require.True(t, active == l.active || l.inFlight[active],
			"round %d: active authority %s; the last acknowledged activation was %s, unanswered ones %v", round, active, l.active, l.inFlight)
	}
	if l.federated {
		parseSPIFFE(t, "beta.test", s.treaty("bundle", "list", "-id", "spiffe://beta.test", "-format", "spiffe"))
	}
	for id := range l.entries {
		s.treaty("entry", "show", "-entryID", id)
	}
	l.maxSeq, l.active = seq, active
	clear(l.inFlight)
	clear(l.entries)
}

// churn rotates authorities and rewrites a federated bundle until stop is
// closed, recording in l what the server acknowledges. Commands fail once
// the server is killed; that is the point.
func churn(s *server, partnerDoc string, l *ledger, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		rotate(s, []string{"x509", "jwt"}[i%2], l)
		if _, _, err := s.treatyErr("bundle", "set", "-id", "spiffe://beta.test", "-path", partnerDoc, "-format", "spiffe"); err == nil {
			l.setFederated()
		}
		if doc, _, err := s.treatyErr("bundle", "show", "-format", "spiffe"); err == nil {
			if b, perr := parseDoc("alpha.test", doc); perr == nil {
				if n, ok := b.SequenceNumber(); ok {
					l.sawSequence(n)
				}
			}
		}
	}
}

// rotate prepares and activates a new authority of kind, then taints and
// revokes the old one.
func rotate(s *server, kind string, l *ledger) {
	out, _, err := s.treatyErr("localauthority", kind, "prepare")
	if m := preparedIDRe.FindStringSubmatch(out); err == nil && m != nil {
		if kind == "x509" {
			l.activating(m[1])
		}
		if _, _, err := s.treatyErr("localauthority", kind, "activate", "-authorityID", m[1]); err == nil && kind == "x509" {
			l.activated(m[1])
		}
	}
	show, _, _ := s.treatyErr("localauthority", kind, "show")
	if m := oldIDRe.FindStringSubmatch(show); m != nil {
		_, _, _ = s.treatyErr("localauthority", kind, "taint", "-authorityID", m[1])
		_, _, _ = s.treatyErr("localauthority", kind, "revoke", "-authorityID", m[1])
	}
}

// checkActiveIsPublished requires the active X.509 authority's certificate
// in the bundle, which also proves its key loaded and matched at start-up,
// and returns the authority's ID.
func checkActiveIsPublished(t *testing.T, s *server) string {
	t.Helper()
	m := activeIDRe.FindStringSubmatch(s.treaty("localauthority", "x509", "show"))
	require.NotNil(t, m)
	b := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
	for _, cert := range b.X509Authorities() {
		if hex.EncodeToString(cert.SubjectKeyId) == m[1] {
			return m[1]
		}
	}
	t.Fatalf("active authority %s is not in the bundle", m[1])
	return ""
}
