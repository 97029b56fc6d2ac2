package invite

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: an invite is untrusted input pasted by a person. Decode
// never panics, returns the zero Token with every error, and what it
// accepts is complete and encodes back to an invite that decodes the
// same.
func FuzzDecode(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tok := range []Token{validToken(now), {TrustDomain: "alpha.test", URLs: []string{"https://a", "https://b"}, Profile: "https_spiffe",
		EndpointSPIFFEID: "spiffe://alpha.test/x", Fingerprint: "ab", Bundle: []byte(`{"keys":[]}`), Expires: now.Unix() + 1, Nonce: "n", Reverse: true}} {
		enc, err := Encode(tok)
		require.NoError(f, err)
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add("treaty-invite-1..")
	f.Add(`{"keys":[]}`)
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Decode(s, now)
		if err != nil {
			require.Zero(t, tok, "a refused invite fills nothing")
			return
		}
		require.True(t, tok.TrustDomain != "" && len(tok.URLs) > 0 && tok.Fingerprint != "" && tok.Nonce != "")
		require.Greater(t, tok.Expires, now.Unix())
		enc, err := Encode(tok)
		require.NoError(t, err)
		again, err := Decode(enc, now)
		require.NoError(t, err)
		if len(tok.Bundle) > 0 { // encoding compacts the embedded bundle's JSON
			require.JSONEq(t, string(tok.Bundle), string(again.Bundle))
			tok.Bundle, again.Bundle = nil, nil
		}
		require.Equal(t, tok, again)
		require.True(t, strings.HasPrefix(enc, prefix))
	})
}
