package nodeattest

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParsePayload feeds the x509pop payload parser what an agent could
// send: it returns certificates or a malformed refusal, never panics.
func FuzzParsePayload(f *testing.F) {
	for _, name := range []string{"leaf-ecdsa.pem", "leaf-rsa.pem"} {
		agent := testAgent{chain: []*x509.Certificate{readLeaf(f, name)}}
		f.Add(agent.payload())
	}
	f.Add([]byte(`{"certificates":[]}`))
	f.Add([]byte(`{"certificates":["AQID"]}`))
	f.Add([]byte(`{"Certificates":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		certs, err := parsePayload(payload, DefaultMaxIntermediates)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			return
		}
		if len(certs) == 0 || len(certs) > 1+DefaultMaxIntermediates {
			t.Fatalf("parsed %d certificates", len(certs))
		}
	})
}

// FuzzChallengeResponse feeds the challenge response parser and verifier
// what an agent could answer to the golden challenges. Only a real
// signature verifies; nothing panics.
func FuzzChallengeResponse(f *testing.F) {
	leaves := []*x509.Certificate{readLeaf(f, "leaf-ecdsa.pem"), readLeaf(f, "leaf-rsa.pem")}
	for _, name := range []string{"response-ecdsa.json", "response-rsa.json"} {
		raw, err := os.ReadFile(filepath.Join("testdata", "x509pop", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"ecdsa_signature":{"nonce":"","r":"","s":""}}`))
	f.Add([]byte(`{"rsa_signature":{"nonce":"AA==","signature":"AA=="}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, answer []byte) {
		resp, err := parseResponse(answer)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			return
		}
		for _, leaf := range leaves {
			err := verifyResponse(leaf.PublicKey, goldenNonce(), resp)
			if err != nil && !errors.Is(err, ErrDenied) {
				t.Fatalf("error is not ErrDenied: %v", err)
			}
		}
	})
}

// FuzzX509POPAttest runs the whole x509pop exchange with a fuzzed payload and
// challenge response, trusting the golden leaves: every outcome is a refusal
// of one kind, never a panic, and never an attested agent, since nobody holds
// the leaves' keys.
func FuzzX509POPAttest(f *testing.F) {
	cas := x509.NewCertPool()
	cas.AddCert(readLeaf(f, "leaf-ecdsa.pem"))
	cas.AddCert(readLeaf(f, "leaf-rsa.pem"))
	a, err := NewX509POP(X509POPConfig{TrustDomain: td, CAs: cas, Now: func() time.Time {
		return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	}})
	if err != nil {
		f.Fatal(err)
	}
	for _, alg := range []string{"ecdsa", "rsa"} {
		agent := testAgent{chain: []*x509.Certificate{readLeaf(f, "leaf-"+alg+".pem")}}
		raw, err := os.ReadFile(filepath.Join("testdata", "x509pop", "response-"+alg+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(agent.payload(), raw)
	}
	f.Fuzz(func(t *testing.T, payload, answer []byte) {
		_, err := a.Attest(context.Background(), payload, func(context.Context, []byte) ([]byte, error) {
			return answer, nil
		})
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDenied) {
			t.Fatalf("want a refusal, got %v", err)
		}
	})
}
