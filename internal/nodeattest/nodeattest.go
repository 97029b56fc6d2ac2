// Package nodeattest owns node attestation: turning what an agent presents
// (a join token, or an X.509 certificate and proof that it holds the key)
// into the agent's SPIFFE ID, its selectors and whether it may re-attest
// instead of renewing its SVID.
//
// It knows neither gRPC nor the datastore. The agent API drives an Attestor
// with the payload of AttestAgent's first request and a ChallengeFunc that
// carries challenges over the stream, and maps the errors defined here to
// gRPC codes.
package nodeattest

import (
	"context"
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Attestor types, as the agent names them in AttestAgent's data.type.
const (
	TypeJoinToken = "join_token"
	TypeX509POP   = "x509pop"
)

// Attestor is one node attestation method. Implementations are safe for
// concurrent use.
type Attestor interface {
	// Type is the attestor type the agent names, e.g. "join_token".
	Type() string
	// Attest checks the agent's payload and returns who the agent is.
	// Challenge-response methods call challenge once per round; one-shot
	// methods never call it. An error caused by what the agent presented
	// matches ErrMalformed or ErrDenied (errors.Is) and its message is
	// meant for the agent's operator; any other error is the server's own.
	Attest(ctx context.Context, payload []byte, challenge ChallengeFunc) (Result, error)
}

// ChallengeFunc sends a challenge to the agent and returns its response. The
// transport supplies it (for the agent API: an AttestAgentResponse with the
// challenge, then the next request's challenge_response). Its errors are
// returned by Attest unchanged in kind.
type ChallengeFunc func(ctx context.Context, challenge []byte) (response []byte, err error)

// Result is an attested agent.
type Result struct {
	// AgentID is the agent's SPIFFE ID, under /spire/agent/ in the server's
	// trust domain.
	AgentID spiffeid.ID
	// Selectors describe the node; node-alias entries match on them.
	Selectors []Selector
	// CanReattest is true when the agent attests again to get a new SVID
	// (x509pop) instead of renewing it (join_token, whose token is gone).
	CanReattest bool
}

// Selector is one attribute of an attested node, e.g. {Type: "x509pop",
// Value: "subject:cn:node-1"}. It has datastore.Selector's shape; this
// package does not import the datastore.
type Selector struct {
	Type  string
	Value string
}

// The kinds of refusal. Attest's errors match one of them when the agent,
// not the server, is at fault.
var (
	// ErrMalformed means the agent sent something that cannot be read (the
	// agent API answers InvalidArgument).
	ErrMalformed = errors.New("malformed attestation data")
	// ErrDenied means what the agent sent was read and does not prove who
	// it is: an unknown, used or expired join token, a certificate that does
	// not chain to a trusted CA, a wrong signature (the agent API answers
	// PermissionDenied, on which spire-agent stops instead of retrying).
	ErrDenied = errors.New("attestation denied")
)

// refusal is an attestation refused because of what the agent presented.
type refusal struct {
	kind  error  // ErrMalformed or ErrDenied
	msg   string // what was wrong
	cause error  // the detail, if any
	fix   string // what to do about it
}

func (r *refusal) Error() string {
	s := r.msg
	if r.cause != nil {
		s += ": " + r.cause.Error()
	}
	if r.fix != "" {
		s += "; " + r.fix
	}
	return s
}

// Is reports whether target is the refusal's kind.
func (r *refusal) Is(target error) bool { return target == r.kind }

func (r *refusal) Unwrap() error { return r.cause }

func malformed(msg string, cause error, fix string) error {
	return &refusal{kind: ErrMalformed, msg: msg, cause: cause, fix: fix}
}

func denied(msg string, cause error, fix string) error {
	return &refusal{kind: ErrDenied, msg: msg, cause: cause, fix: fix}
}
