package ca

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func BenchmarkSignX509SVID(b *testing.B) {
	c := newEnv(b).open()
	key, err := ECP256.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://alpha.test/svc/bench")
	for b.Loop() {
		if _, err := c.SignX509SVID(X509SVIDParams{ID: id, PublicKey: key.Public()}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignJWTSVID(b *testing.B) {
	c := newEnv(b).open()
	id := spiffeid.RequireFromString("spiffe://alpha.test/svc/bench")
	for b.Loop() {
		if _, _, err := c.SignJWTSVID(JWTSVIDParams{ID: id, Audience: []string{"bench"}}); err != nil {
			b.Fatal(err)
		}
	}
}
