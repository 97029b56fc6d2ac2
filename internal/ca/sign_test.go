package ca

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

func TestSignX509SVID(t *testing.T) {
	for _, upstream := range []bool{false, true} {
		name := "ok/self-signed"
		if upstream {
			name = "ok/upstream"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.now = time.Now()
			if upstream {
				certFile, keyFile, _ := writeRoot(t, t.TempDir(), e.now.Add(48*time.Hour))
				up, err := LoadUpstream(certFile, keyFile, "")
				require.NoError(t, err)
				e.cfg.Upstream = up
			}
			c := e.open()
			key, err := ECP256.GenerateKey()
			require.NoError(t, err)
			id := spiffeid.RequireFromString("spiffe://alpha.test/spire/server")
			chain, err := c.SignX509SVID(X509SVIDParams{ID: id, PublicKey: key.Public()})
			require.NoError(t, err)

			// go-spiffe verifies it against our published bundle.
			bundle := x509bundle.FromX509Authorities(td, c.Bundle().X509Authorities())
			gotID, _, err := x509svid.Verify(chain, bundle)
			require.NoError(t, err)
			require.Equal(t, id, gotID)
			require.False(t, chain[0].IsCA)
			require.Equal(t, time.Hour, chain[0].NotAfter.Sub(chain[0].NotBefore)-backdate)
		})
	}
}

func TestMintX509SVID(t *testing.T) {
	e := newEnv(t)
	e.now = time.Now() // go-spiffe verifies at the wall clock
	c := e.open()
	id := spiffeid.RequireFromString("spiffe://alpha.test/spire/server")
	svid, err := c.MintX509SVID(id)
	require.NoError(t, err)
	require.Equal(t, id, svid.ID)
	gotID, _, err := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(td, c.Bundle().X509Authorities()))
	require.NoError(t, err)
	require.Equal(t, id, gotID)
	require.Equal(t, svid.Certificates[0].PublicKey, svid.PrivateKey.Public(), "the key is the certificate's")

	_, err = c.MintX509SVID(spiffeid.RequireFromString("spiffe://other.test/x"))
	require.ErrorContains(t, err, "not in trust domain")
}

func TestSignX509SVIDRefusesForeignIDAndCapsLifetime(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	key, err := ECP256.GenerateKey()
	require.NoError(t, err)
	_, err = c.SignX509SVID(X509SVIDParams{ID: spiffeid.RequireFromString("spiffe://other.test/x"), PublicKey: key.Public()})
	require.ErrorContains(t, err, "not in trust domain")

	chain, err := c.SignX509SVID(X509SVIDParams{ID: spiffeid.RequireFromString("spiffe://alpha.test/x"), PublicKey: key.Public(), TTL: 1000 * time.Hour})
	require.NoError(t, err)
	active := c.State(datastore.KindX509).Active
	require.False(t, chain[0].NotAfter.After(active.ExpiresAt), "SVID outlives its authority")
}

func TestSignJWTSVID(t *testing.T) {
	for _, kt := range []KeyType{ECP256, ECP384, RSA2048} {
		t.Run("ok/"+string(kt), func(t *testing.T) {
			e := newEnv(t)
			e.now = time.Now()
			e.cfg.KeyType = kt
			c := e.open()
			id := spiffeid.RequireFromString("spiffe://alpha.test/svc/api")
			token, expiry, err := c.SignJWTSVID(JWTSVIDParams{ID: id, Audience: []string{"beta", "gamma"}})
			require.NoError(t, err)
			require.WithinDuration(t, e.now.Add(DefaultJWTSVIDTTL), expiry, time.Second)

			// go-spiffe validates it against our published JWT keys.
			keys := jwtbundle.FromJWTAuthorities(td, c.Bundle().JWTAuthorities())
			svid, err := jwtsvid.ParseAndValidate(token, keys, []string{"gamma"})
			require.NoError(t, err)
			require.Equal(t, id, svid.ID)
			require.Equal(t, []string{"beta", "gamma"}, svid.Audience)
		})
	}
	t.Run("fail/no audience", func(t *testing.T) {
		c := newEnv(t).open()
		_, _, err := c.SignJWTSVID(JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://alpha.test/x")})
		require.ErrorContains(t, err, "audience")
	})
	t.Run("fail/foreign id", func(t *testing.T) {
		c := newEnv(t).open()
		_, _, err := c.SignJWTSVID(JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://other.test/x"), Audience: []string{"a"}})
		require.ErrorContains(t, err, "not in trust domain")
	})
}
