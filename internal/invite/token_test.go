package invite

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTokenRoundTripAndDamage(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := Token{TrustDomain: "alpha.test", URLs: []string{"https://127.0.0.1:8443"}, Profile: "https_spiffe",
		EndpointSPIFFEID: "spiffe://alpha.test/spire/server", Fingerprint: strings.Repeat("ab", 32), Expires: now.Add(time.Hour).Unix(), Nonce: "n1"}
	enc, err := Encode(tok)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(enc, "treaty-invite-1."))
	require.NotContains(t, enc, " ")

	got, err := Decode("  "+enc+"\n", now)
	require.NoError(t, err, "surrounding whitespace from a paste is fine")
	require.Equal(t, tok, got)

	t.Run("fail/every single-character change is caught", func(t *testing.T) {
		for i := len("treaty-invite-1."); i < len(enc); i++ {
			c := byte('A')
			if enc[i] == 'A' {
				c = 'B'
			}
			damaged := enc[:i] + string(c) + enc[i+1:]
			_, err := Decode(damaged, now)
			require.Error(t, err, "position %d", i)
		}
		_, err := Decode(enc[:len(enc)-1], now)
		require.ErrorIs(t, err, ErrDamaged)
	})
	t.Run("fail/expired", func(t *testing.T) {
		_, err := Decode(enc, now.Add(2*time.Hour))
		require.ErrorIs(t, err, ErrExpired)
		require.ErrorContains(t, err, "ask alpha.test for a new one")
	})
	t.Run("fail/not an invite", func(t *testing.T) {
		_, err := Decode(`{"keys":[]}`, now)
		require.ErrorIs(t, err, ErrNotInvite)
	})
}

func validToken(now time.Time) Token {
	return Token{TrustDomain: "alpha.test", URLs: []string{"https://127.0.0.1:8443"}, Profile: "https_web",
		Fingerprint: strings.Repeat("ab", 32), Expires: now.Add(time.Hour).Unix(), Nonce: "n1"}
}

// TestDecodeExpiryBoundary: an invite is valid up to, and not at, its
// expiry second.
func TestDecodeExpiryBoundary(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	enc, err := Encode(validToken(now))
	require.NoError(t, err)
	exp := now.Add(time.Hour)
	for _, tc := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{name: "ok/a second before", at: exp.Add(-time.Second), ok: true},
		{name: "ok/a nanosecond before", at: exp.Add(-time.Nanosecond), ok: true},
		{name: "fail/at the expiry", at: exp},
		{name: "fail/a nanosecond after", at: exp.Add(time.Nanosecond)},
		{name: "fail/long after", at: exp.AddDate(1, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(enc, tc.at)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrExpired)
			require.ErrorContains(t, err, "at 2026-01-01T01:00:00Z")
		})
	}
}

// TestDecodeRefusesTruncated: every prefix of an invite, as a paste cut
// short leaves it, is refused as not an invite or as damaged.
func TestDecodeRefusesTruncated(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	enc, err := Encode(validToken(now))
	require.NoError(t, err)
	for n := range len(enc) {
		_, err := Decode(enc[:n], now)
		if n < len(prefix) {
			require.ErrorIs(t, err, ErrNotInvite, "%d characters", n)
			continue
		}
		require.ErrorIs(t, err, ErrDamaged, "%d characters", n)
	}
}

// TestDecodeRefusesIncomplete: a well-formed invite (valid checksum)
// missing what a join needs, or carrying fields this treaty does not
// know, is refused.
func TestDecodeRefusesIncomplete(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		edit   func(*Token)
		want   error
		phrase string
	}{
		{name: "fail/no trust domain", edit: func(t *Token) { t.TrustDomain = "" }, want: ErrDamaged},
		{name: "fail/no URL", edit: func(t *Token) { t.URLs = nil }, want: ErrDamaged},
		{name: "fail/no fingerprint", edit: func(t *Token) { t.Fingerprint = "" }, want: ErrDamaged},
		{name: "fail/no nonce", edit: func(t *Token) { t.Nonce = "" }, want: ErrDamaged},
		{name: "fail/no expiry", edit: func(t *Token) { t.Expires = 0 }, want: ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := validToken(now)
			tc.edit(&tok)
			enc, err := Encode(tok)
			require.NoError(t, err)
			_, err = Decode(enc, now)
			require.ErrorIs(t, err, tc.want)
		})
	}
	t.Run("fail/unknown field", func(t *testing.T) {
		body := prefix + base64.RawURLEncoding.EncodeToString([]byte(`{"td":"alpha.test","urls":["https://a"],"fp":"ab","nonce":"n","exp":9999999999,"admin":true}`))
		_, err := Decode(body+"."+checksum(body), now)
		require.ErrorContains(t, err, "made by a newer or different treaty")
	})
	t.Run("fail/payload not base64", func(t *testing.T) {
		body := prefix + "not*base64"
		_, err := Decode(body+"."+checksum(body), now)
		require.ErrorIs(t, err, ErrDamaged)
	})
}

// TestNewNonce: nonces are 128 random bits, never repeated.
func TestNewNonce(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n, err := NewNonce()
		require.NoError(t, err)
		require.Len(t, n, 32)
		require.False(t, seen[n])
		seen[n] = true
	}
}
