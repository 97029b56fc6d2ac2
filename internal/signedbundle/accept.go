package signedbundle

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/treatyhq/treaty/internal/bundle"
)

// Decision is what Accept decided about a verified file.
type Decision int

const (
	// Newer means the file's bundle is newer than the one held: store it.
	Newer Decision = iota + 1
	// Unchanged means the file holds the bundle already held.
	Unchanged
)

// Accept decides whether s may replace held, the bundle stored for its trust
// domain, nil when none is. With a bundle held, s must be signed by one of
// its JWT authorities and its sequence must not be lower (a replayed or
// rolled-back file), nor equal with other content. With none, s's bundle
// must have the fingerprint pin (bundle.Fingerprint, hex SHA-256, an
// optional "sha256:" prefix and colons allowed) and be signed by one of its
// own JWT authorities. It returns the key ID that verified.
func (s *Signed) Accept(held *spiffebundle.Bundle, pin string) (Decision, string, error) {
	if held == nil {
		kid, err := s.acceptPinned(pin)
		return Newer, kid, err
	}
	heldSeq, _ := held.SequenceNumber()
	if s.Sequence < heldSeq {
		return 0, "", fmt.Errorf("%s sequence %d is %w (%d): a replayed or rolled-back file", s.TrustDomain.Name(), s.Sequence, ErrRollback, heldSeq)
	}
	kid, err := s.Verify(held)
	if err != nil {
		return 0, "", err
	}
	if s.Sequence > heldSeq {
		return Newer, kid, nil
	}
	same, err := sameBundle(s.Bundle, held)
	if err != nil || !same {
		return 0, "", fmt.Errorf("%s sequence %d is the one held but its keys differ: a trust domain raises its sequence with every change", s.TrustDomain.Name(), s.Sequence)
	}
	return Unchanged, kid, nil
}

// acceptPinned accepts a first file by its pinned fingerprint.
func (s *Signed) acceptPinned(pin string) (string, error) {
	if pin == "" {
		return "", fmt.Errorf("%w for %s: pin the partner's bundle fingerprint for the first file (they read it with treaty bundle inspect)", ErrNoAnchor, s.TrustDomain.Name())
	}
	fp, err := bundle.Fingerprint(s.Bundle)
	if err != nil {
		return "", err
	}
	if fp != NormalizePin(pin) {
		return "", fmt.Errorf("%s bundle fingerprint %s is not the pinned %s: ask the partner for their current fingerprint", s.TrustDomain.Name(), fp, NormalizePin(pin))
	}
	return s.Verify(s.Bundle)
}

// NormalizePin spells a fingerprint as bundle.Fingerprint does: lower-case
// hex without a "sha256:" prefix or colons.
func NormalizePin(pin string) string {
	pin = strings.ToLower(strings.TrimSpace(pin))
	pin = strings.TrimPrefix(pin, "sha256:")
	return strings.ReplaceAll(pin, ":", "")
}

// sameBundle reports whether a and b hold the same keys and refresh hint.
func sameBundle(a, b *spiffebundle.Bundle) (bool, error) {
	ra, err := bundle.Marshal(a)
	if err != nil {
		return false, err
	}
	rb, err := bundle.Marshal(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ra, rb), nil
}
