package nodeattest

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// pki is the fixture of the x509pop tests: a root trusted for node
// certificates, an intermediate under it, and a root nobody trusts.
type pki struct {
	root, inter, other *testCA
}

func newPKI(t *testing.T) pki {
	root := newRootCA(t, "node root")
	return pki{root: root, inter: root.intermediate(t, "node intermediate"), other: newRootCA(t, "other root")}
}

func TestX509POP(t *testing.T) {
	p := newPKI(t)
	type test struct {
		name       string
		cfg        X509POPConfig // TrustDomain and CAs (the root) are filled in
		agent      func(t *testing.T) testAgent
		payload    []byte        // instead of the agent's
		challenge  ChallengeFunc // instead of the agent's
		wantErr    error         // ErrMalformed, ErrDenied or the transport's
		wantMsg    string
		wantRounds int
	}
	ecdsaUnder := func(ca *testCA, chain ...*testCA) func(t *testing.T) testAgent {
		return func(t *testing.T) testAgent {
			key := ecKey(t)
			return withChain(testAgent{key: key}, ca.leaf(t, key), chain...)
		}
	}
	tests := []test{
		{name: "ok/ecdsa leaf under an intermediate", agent: ecdsaUnder(p.inter, p.inter), wantRounds: 1},
		{name: "ok/ecdsa leaf under the root", agent: ecdsaUnder(p.root), wantRounds: 1},
		{name: "ok/rsa leaf", wantRounds: 1, agent: func(t *testing.T) testAgent {
			key := rsaKey(t, 0)
			return withChain(testAgent{key: key}, p.inter.leaf(t, key), p.inter)
		}},
		{name: "ok/four intermediates", wantRounds: 1, agent: func(t *testing.T) testAgent {
			i1 := p.root.intermediate(t, "i1")
			i2 := i1.intermediate(t, "i2")
			i3 := i2.intermediate(t, "i3")
			i4 := i3.intermediate(t, "i4")
			return ecdsaUnder(i4, i4, i3, i2, i1)(t)
		}},
		{
			name: "fail/chain from another CA", agent: ecdsaUnder(p.other),
			wantErr: ErrDenied, wantMsg: "certificate verification failed",
		},
		{
			name: "fail/intermediate not sent", agent: ecdsaUnder(p.inter),
			wantErr: ErrDenied, wantMsg: "certificate verification failed",
		},
		{
			name: "fail/leaf expired", agent: ecdsaUnder(p.root),
			cfg:     X509POPConfig{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }},
			wantErr: ErrDenied, wantMsg: "certificate verification failed",
		},
		{name: "fail/leaf without digitalSignature", wantErr: ErrDenied, wantMsg: "does not allow digital signatures",
			agent: func(t *testing.T) testAgent {
				key := ecKey(t)
				leaf := p.root.leaf(t, key, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment })
				return testAgent{key: key, chain: []*x509.Certificate{leaf}}
			}},
		{name: "fail/ed25519 leaf", wantErr: ErrDenied, wantMsg: "the agent's certificate has a key of type Ed25519",
			agent: func(t *testing.T) testAgent {
				key := edKey(t)
				return testAgent{key: key, chain: []*x509.Certificate{p.root.leaf(t, key)}}
			}},
		{name: "fail/ecdsa signed with another key", wantErr: ErrDenied, wantRounds: 1,
			wantMsg: "challenge response verification failed: the ECDSA signature does not verify",
			agent: func(t *testing.T) testAgent {
				a := ecdsaUnder(p.root)(t)
				a.key = ecKey(t)
				return a
			}},
		{name: "fail/rsa signed with another key", wantErr: ErrDenied, wantRounds: 1,
			wantMsg: "challenge response verification failed: the RSA signature does not verify",
			agent: func(t *testing.T) testAgent {
				return testAgent{key: rsaKey(t, 1), chain: []*x509.Certificate{p.root.leaf(t, rsaKey(t, 0))}}
			}},
		{name: "fail/ecdsa signature corrupted", wantErr: ErrDenied, wantRounds: 1,
			wantMsg: "the ECDSA signature does not verify",
			agent: func(t *testing.T) testAgent {
				a := ecdsaUnder(p.root)(t)
				a.corrupt = true
				return a
			}},
		{name: "fail/rsa signature corrupted", wantErr: ErrDenied, wantRounds: 1,
			wantMsg: "the RSA signature does not verify",
			agent: func(t *testing.T) testAgent {
				key := rsaKey(t, 0)
				return testAgent{key: key, chain: []*x509.Certificate{p.root.leaf(t, key)}, corrupt: true}
			}},
		{name: "fail/rsa answer to an ecdsa challenge", wantErr: ErrDenied, wantRounds: 1,
			wantMsg: "the response has no ECDSA signature",
			agent: func(t *testing.T) testAgent {
				a := ecdsaUnder(p.root)(t)
				a.key = rsaKey(t, 0)
				return a
			}},
		{name: "fail/agent nonce of 31 bytes", wantErr: ErrDenied, wantRounds: 1,
			wantMsg: "the agent's nonce is 31 bytes, not 32",
			agent: func(t *testing.T) testAgent {
				a := ecdsaUnder(p.root)(t)
				a.nonceSize = 31
				return a
			}},
		{name: "fail/agent nonce of 33 bytes", wantErr: ErrDenied, wantRounds: 1,
			wantMsg: "the agent's nonce is 33 bytes, not 32",
			agent: func(t *testing.T) testAgent {
				a := ecdsaUnder(p.root)(t)
				a.nonceSize = 33
				return a
			}},
		{name: "fail/payload not json", payload: []byte("certificates"),
			wantErr: ErrMalformed, wantMsg: "x509pop payload is not a certificate list"},
		{name: "fail/payload without certificates", payload: []byte(`{"certificates":[]}`),
			wantErr: ErrMalformed, wantMsg: "x509pop payload holds no certificate"},
		{name: "fail/payload with a certificate not in base64", payload: []byte(`{"certificates":["%%%"]}`),
			wantErr: ErrMalformed, wantMsg: "x509pop payload is not a certificate list"},
		{name: "fail/payload with a certificate not DER", payload: []byte(`{"certificates":["AQID"]}`),
			wantErr: ErrMalformed, wantMsg: "x509pop certificate 0 (0 is the leaf) cannot be parsed"},
		{name: "fail/too many intermediates", cfg: X509POPConfig{MaxIntermediates: 1},
			wantErr: ErrMalformed, wantMsg: "x509pop payload holds 2 intermediate certificates, more than the 1 allowed",
			agent: func(t *testing.T) testAgent {
				i2 := p.inter.intermediate(t, "i2")
				return ecdsaUnder(i2, i2, p.inter)(t)
			}},
		{name: "fail/five intermediates by default", wantErr: ErrMalformed, wantMsg: "more than the 4 allowed",
			payload: []byte(`{"certificates":["AQ==","AQ==","AQ==","AQ==","AQ==","AQ=="]}`)},
		{name: "fail/rsa key over 8192 bits", wantErr: ErrMalformed,
			wantMsg: "x509pop certificate 0 (0 is the leaf) has a 8200-bit RSA key, more than 8192",
			agent: func(t *testing.T) testAgent {
				return testAgent{chain: []*x509.Certificate{p.root.leafFor(t, hugeRSAPublicKey(8200))}}
			}},
		{name: "fail/challenge response not json", agent: ecdsaUnder(p.root), wantRounds: 1,
			challenge: func(context.Context, []byte) ([]byte, error) { return []byte("signed"), nil },
			wantErr:   ErrMalformed, wantMsg: "x509pop challenge response is not the JSON spire-agent sends"},
		{name: "fail/challenge not delivered", agent: ecdsaUnder(p.root), wantRounds: 1,
			challenge: func(context.Context, []byte) ([]byte, error) { return nil, io.ErrUnexpectedEOF },
			wantErr:   io.ErrUnexpectedEOF, wantMsg: "x509pop challenge: unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.TrustDomain, cfg.CAs = td, pool(p.root)
			a, err := NewX509POP(cfg)
			require.NoError(t, err)
			var agent testAgent
			if tc.agent != nil {
				agent = tc.agent(t)
			}
			payload := tc.payload
			if payload == nil {
				payload = agent.payload()
			}
			rounds := 0
			challenge := agent.challengeFunc(t, &rounds)
			if tc.challenge != nil {
				challenge = func(ctx context.Context, c []byte) ([]byte, error) {
					rounds++
					return tc.challenge(ctx, c)
				}
			}

			res, err := a.Attest(context.Background(), payload, challenge)
			require.Equal(t, tc.wantRounds, rounds, "challenge rounds")
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.ErrorContains(t, err, tc.wantMsg)
				requireOneKind(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			leaf := agent.chain[0]
			require.Equal(t, "spiffe://example.org/spire/agent/x509pop/"+fingerprint(leaf), res.AgentID.String())
			require.True(t, res.CanReattest)
			require.Contains(t, res.Selectors, Selector{Type: "x509pop", Value: "ca:fingerprint:" + fingerprint(p.root.cert)})
		})
	}
}

// requireOneKind checks that err is of kind want and of no other kind: a
// refusal is either malformed or denied, and a transport error neither.
func requireOneKind(t *testing.T, err, want error) {
	t.Helper()
	for _, kind := range []error{ErrMalformed, ErrDenied} {
		if !errors.Is(want, kind) {
			require.NotErrorIs(t, err, kind)
		}
	}
}

// hugeRSAPublicKey is an RSA public key of the given size with no private
// half: 2^(bits-1)+1, since only the size is looked at.
func hugeRSAPublicKey(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

func withChain(a testAgent, leaf *x509.Certificate, cas ...*testCA) testAgent {
	a.chain = []*x509.Certificate{leaf}
	for _, ca := range cas {
		a.chain = append(a.chain, ca.cert)
	}
	return a
}

func TestX509POPSelectors(t *testing.T) {
	p := newPKI(t)
	key := ecKey(t)
	leafWith := func(cn string, serial int64) *x509.Certificate {
		return p.inter.leaf(t, key, func(c *x509.Certificate) {
			c.Subject.CommonName = cn
			c.SerialNumber.SetInt64(serial)
		})
	}
	sel := func(v string) Selector { return Selector{Type: "x509pop", Value: v} }
	rootFP, interFP := fingerprint(p.root.cert), fingerprint(p.inter.cert)
	tests := []struct {
		name string
		leaf *x509.Certificate
		cas  *x509.CertPool
		want []Selector
	}{
		{
			name: "ok/common name, each CA, serial in even-length hex",
			leaf: leafWith("node-1", 0xabc), cas: pool(p.root),
			want: []Selector{sel("subject:cn:node-1"), sel("ca:fingerprint:" + interFP), sel("ca:fingerprint:" + rootFP), sel("serialnumber:0abc")},
		},
		{
			name: "ok/no common name, no subject selector",
			leaf: leafWith("", 0x1234), cas: pool(p.root),
			want: []Selector{sel("ca:fingerprint:" + interFP), sel("ca:fingerprint:" + rootFP), sel("serialnumber:1234")},
		},
		{
			name: "ok/intermediate trusted too: two chains, each CA once",
			leaf: leafWith("node-1", 1), cas: pool(p.root, p.inter),
			want: []Selector{sel("subject:cn:node-1"), sel("ca:fingerprint:" + interFP), sel("ca:fingerprint:" + rootFP), sel("serialnumber:01")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewX509POP(X509POPConfig{TrustDomain: td, CAs: tc.cas})
			require.NoError(t, err)
			agent := withChain(testAgent{key: key}, tc.leaf, p.inter)
			rounds := 0
			res, err := a.Attest(context.Background(), agent.payload(), agent.challengeFunc(t, &rounds))
			require.NoError(t, err)
			require.ElementsMatch(t, tc.want, res.Selectors)
			require.Len(t, res.Selectors, len(tc.want))
		})
	}
}

func TestX509POPAgentPathTemplate(t *testing.T) {
	root := newRootCA(t, "node root")
	key := ecKey(t)
	leafWith := func(cn string) *x509.Certificate {
		return root.leaf(t, key, func(c *x509.Certificate) {
			c.Subject.CommonName = cn
			c.SerialNumber.SetInt64(0xf00d)
		})
	}
	leaf := leafWith("node-1")
	tests := []struct {
		name     string
		template string
		leaf     *x509.Certificate
		wantID   string
		wantNew  string // error from NewX509POP
		wantErr  string // denied by Attest
	}{
		{name: "ok/default", leaf: leaf,
			wantID: "spiffe://example.org/spire/agent/x509pop/" + fingerprint(leaf)},
		{name: "ok/default spelt out", template: "/{{ .PluginName }}/{{ .Fingerprint }}", leaf: leaf,
			wantID: "spiffe://example.org/spire/agent/x509pop/" + fingerprint(leaf)},
		{name: "ok/common name", template: "/cn/{{ .Subject.CommonName }}", leaf: leaf,
			wantID: "spiffe://example.org/spire/agent/cn/node-1"},
		{name: "ok/trust domain and serial", template: "/{{ .TrustDomain }}/{{ .PluginName }}/{{ .SerialNumberHex }}", leaf: leaf,
			wantID: "spiffe://example.org/spire/agent/example.org/x509pop/f00d"},
		{name: "fail/unknown field", template: "/{{ .SVIDPathTrimmed }}", wantNew: "can't evaluate field SVIDPathTrimmed"},
		{name: "fail/no leading slash", template: "{{ .Fingerprint }}", wantNew: "path must have a leading slash"},
		{name: "fail/empty output", template: "{{ if false }}x{{ end }}", wantNew: "the path is empty"},
		{name: "fail/syntax", template: "/{{ .Fingerprint", wantNew: "unclosed action"},
		{name: "fail/common name not a path segment", template: "/{{ .Subject.CommonName }}", leaf: leafWith("node 1"),
			wantErr: `the agent path template does not make a valid SPIFFE ID path from the agent's certificate ("/node 1")`},
		{name: "fail/no common name", template: "/{{ .Subject.CommonName }}", leaf: leafWith(""),
			wantErr: "path cannot have a trailing slash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewX509POP(X509POPConfig{TrustDomain: td, CAs: pool(root), AgentPathTemplate: tc.template})
			if tc.wantNew != "" {
				require.ErrorContains(t, err, tc.wantNew)
				return
			}
			require.NoError(t, err)
			agent := testAgent{key: key, chain: []*x509.Certificate{tc.leaf}}
			rounds := 0
			res, err := a.Attest(context.Background(), agent.payload(), agent.challengeFunc(t, &rounds))
			if tc.wantErr != "" {
				require.ErrorIs(t, err, ErrDenied)
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantID, res.AgentID.String())
		})
	}
}

func TestNewX509POP(t *testing.T) {
	root := newRootCA(t, "node root")
	tests := []struct {
		name    string
		cfg     X509POPConfig
		wantErr string
	}{
		{name: "ok/defaults", cfg: X509POPConfig{TrustDomain: td, CAs: pool(root)}},
		{name: "fail/no trust domain", cfg: X509POPConfig{CAs: pool(root)}, wantErr: "needs a trust domain and at least one CA"},
		{name: "fail/no CAs", cfg: X509POPConfig{TrustDomain: td}, wantErr: "needs a trust domain and at least one CA"},
		{name: "fail/empty CA pool", cfg: X509POPConfig{TrustDomain: td, CAs: x509.NewCertPool()}, wantErr: "needs a trust domain and at least one CA"},
		{name: "fail/negative max intermediates", cfg: X509POPConfig{TrustDomain: td, CAs: pool(root), MaxIntermediates: -1},
			wantErr: "max intermediates is -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewX509POP(tc.cfg)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "x509pop", a.Type())
			require.Equal(t, DefaultMaxIntermediates, a.maxIntermediates)
		})
	}
}

func TestX509POPWithoutChallengeFunc(t *testing.T) {
	p := newPKI(t)
	a, err := NewX509POP(X509POPConfig{TrustDomain: td, CAs: pool(p.root)})
	require.NoError(t, err)
	key := ecKey(t)
	agent := testAgent{key: key, chain: []*x509.Certificate{p.root.leaf(t, key)}}
	_, err = a.Attest(context.Background(), agent.payload(), nil)
	require.ErrorContains(t, err, "needs a challenge function")
	requireOneKind(t, err, nil)
}

// TestRefusalMessages checks that a refusal reads as one sentence: what was
// wrong, the detail, what to do.
func TestRefusalMessages(t *testing.T) {
	err := denied("certificate verification failed", io.EOF, "check the chain")
	require.Equal(t, "certificate verification failed: EOF; check the chain", err.Error())
	require.ErrorIs(t, err, io.EOF)
	require.ErrorIs(t, err, ErrDenied)
	require.NotErrorIs(t, err, ErrMalformed)
	require.False(t, strings.HasSuffix(err.Error(), "."))
}
