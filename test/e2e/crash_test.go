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
// that the store opens, the keys match the bundle, and the published
// sequence never went backwards.
func TestCrashSafety(t *testing.T) {
	const rounds = 25
	s := newServer(t, "alpha.test", "")
	partner := newServer(t, "beta.test", "")
	partner.start()
	partnerDoc := filepath.Join(t.TempDir(), "beta.json")
	require.NoError(t, os.WriteFile(partnerDoc, []byte(partner.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	partner.stop()

	var maxSeen uint64
	for round := range rounds {
		s.start()
		b := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
		seq := sequence(t, b)
		require.GreaterOrEqual(t, seq, maxSeen, "round %d: sequence went backwards", round)
		checkActiveIsPublished(t, s)

		var mu sync.Mutex
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			churn(s, partnerDoc, stop, func(n uint64) {
				mu.Lock()
				maxSeen = max(maxSeen, n)
				mu.Unlock()
			})
		}()
		time.Sleep(time.Duration(30+rand.IntN(400)) * time.Millisecond) // let the churn run before the crash
		s.kill()
		close(stop)
		<-done
	}
	s.start()
	require.GreaterOrEqual(t, sequence(t, parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))), maxSeen)
	require.Greater(t, maxSeen, uint64(rounds/2), "the churn should have changed the bundle many times")
	leftovers, err := filepath.Glob(filepath.Join(s.dataDir, "keys", ".*tmp*"))
	require.NoError(t, err)
	require.Empty(t, leftovers, "temporary key files survived a restart")
}

// churn rotates authorities and rewrites a federated bundle until stop is
// closed, reporting every sequence it sees published. Commands fail once
// the server is killed; that is the point.
func churn(s *server, partnerDoc string, stop <-chan struct{}, seen func(uint64)) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		kind := []string{"x509", "jwt"}[i%2]
		out, _, err := s.treatyErr("localauthority", kind, "prepare")
		if m := preparedIDRe.FindStringSubmatch(out); err == nil && m != nil {
			_, _, _ = s.treatyErr("localauthority", kind, "activate", "-authorityID", m[1])
		}
		show, _, _ := s.treatyErr("localauthority", kind, "show")
		if m := oldIDRe.FindStringSubmatch(show); m != nil {
			_, _, _ = s.treatyErr("localauthority", kind, "taint", "-authorityID", m[1])
			_, _, _ = s.treatyErr("localauthority", kind, "revoke", "-authorityID", m[1])
		}
		_, _, _ = s.treatyErr("bundle", "set", "-id", "spiffe://beta.test", "-path", partnerDoc, "-format", "spiffe")
		if doc, _, err := s.treatyErr("bundle", "show", "-format", "spiffe"); err == nil {
			if b, perr := parseDoc("alpha.test", doc); perr == nil {
				if n, ok := b.SequenceNumber(); ok {
					seen(n)
				}
			}
		}
	}
}

// checkActiveIsPublished requires the active X.509 authority's certificate
// in the bundle, which also proves its key loaded and matched at start-up.
func checkActiveIsPublished(t *testing.T, s *server) {
	t.Helper()
	m := activeIDRe.FindStringSubmatch(s.treaty("localauthority", "x509", "show"))
	require.NotNil(t, m)
	b := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
	for _, cert := range b.X509Authorities() {
		if hex.EncodeToString(cert.SubjectKeyId) == m[1] {
			return
		}
	}
	t.Fatalf("active authority %s is not in the bundle", m[1])
}
