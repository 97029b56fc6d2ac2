// Package invite makes federation a two-command act: an invite token
// carries what a partner needs to federate with us (trust domain, bundle
// endpoint, profile, endpoint SPIFFE ID and the fingerprint of our current
// bundle), and joining checks the bundle fetched from the endpoint against
// that fingerprint before anything is stored. No JSON is copied by hand.
package invite

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// prefix starts every token, with the format version.
const prefix = "treaty-invite-1."

// Token is what an invite carries.
type Token struct {
	TrustDomain      string   `json:"td"`
	URLs             []string `json:"urls"`
	Profile          string   `json:"profile"`
	EndpointSPIFFEID string   `json:"eid,omitempty"`
	// Fingerprint is bundle.Fingerprint of the inviter's bundle when the
	// invite was made.
	Fingerprint string `json:"fp"`
	// Bundle, with -embedBundle, is the inviter's bundle itself.
	Bundle json.RawMessage `json:"bundle,omitempty"`
	// Expires is a Unix time.
	Expires int64  `json:"exp"`
	Nonce   string `json:"nonce"`
	// Reverse asks the joiner to answer with an invite of its own.
	Reverse bool `json:"rev,omitempty"`
}

// Errors callers tell apart.
var (
	ErrNotInvite = errors.New("this is not a treaty invite: an invite starts with treaty-invite-1")
	ErrDamaged   = errors.New("the invite is damaged: a character was changed, added or lost when it was copied; copy it again whole (it has no spaces or line breaks)")
	ErrExpired   = errors.New("the invite has expired")
)

// NewNonce returns 16 random bytes in hex.
func NewNonce() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Encode writes t as prefix + base64url(JSON) + "." + checksum. The
// checksum (the first 6 bytes of SHA-256 over the rest) catches copying
// mistakes; authenticity comes from the fingerprint, which the joiner
// checks against what the endpoint serves.
func Encode(t Token) (string, error) {
	payload, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	body := prefix + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + checksum(body), nil
}

func checksum(body string) string {
	sum := sha256.Sum256([]byte(body))
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}

// Decode reads a token and checks its checksum and expiry. On error it
// returns the zero Token, never part of one.
func Decode(s string, now time.Time) (Token, error) {
	t, err := decode(s, now)
	if err != nil {
		return Token{}, err
	}
	return t, nil
}

func decode(s string, now time.Time) (Token, error) {
	var t Token
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, prefix) {
		return t, ErrNotInvite
	}
	i := strings.LastIndexByte(s, '.')
	if i <= len(prefix) || checksum(s[:i]) != s[i+1:] {
		return t, ErrDamaged
	}
	payload, err := base64.RawURLEncoding.DecodeString(s[len(prefix):i])
	if err != nil {
		return t, ErrDamaged
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("the invite was made by a newer or different treaty: %w", err)
	}
	if t.TrustDomain == "" || len(t.URLs) == 0 || t.Fingerprint == "" || t.Nonce == "" {
		return t, ErrDamaged
	}
	if exp := time.Unix(t.Expires, 0); !now.Before(exp) {
		return t, fmt.Errorf("%w at %s: ask %s for a new one (treaty federation invite)", ErrExpired, exp.UTC().Format(time.RFC3339), t.TrustDomain)
	}
	return t, nil
}
