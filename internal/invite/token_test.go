package invite

import (
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
