package nodeattest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrJoinTokenNotFound is what a TokenStore returns (possibly wrapped) for a
// token it does not hold: never created, already used or removed.
var ErrJoinTokenNotFound = errors.New("join token not found")

// TokenStore holds join tokens.
type TokenStore interface {
	// ConsumeJoinToken deletes token and returns when it expires, in one
	// step, so that of two agents presenting the same token at most one
	// gets it. A token it does not hold is an error matching
	// ErrJoinTokenNotFound. Safe for concurrent use.
	ConsumeJoinToken(ctx context.Context, token string) (expiresAt time.Time, err error)
}

// JoinTokenConfig configures the join_token attestor.
type JoinTokenConfig struct {
	// TrustDomain is the server's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Tokens is where join tokens are kept. Required.
	Tokens TokenStore
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// JoinToken attests an agent by a single-use token the operator gave it.
// The agent gets the ID spiffe://<trust domain>/spire/agent/join_token/<token>,
// no selectors, and renews its SVID instead of attesting again.
type JoinToken struct {
	td     spiffeid.TrustDomain
	tokens TokenStore
	now    func() time.Time
}

var _ Attestor = (*JoinToken)(nil)

// NewJoinToken returns the join_token attestor.
func NewJoinToken(cfg JoinTokenConfig) (*JoinToken, error) {
	if cfg.TrustDomain.IsZero() || cfg.Tokens == nil {
		return nil, errors.New("nodeattest: join_token needs a trust domain and a token store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &JoinToken{td: cfg.TrustDomain, tokens: cfg.Tokens, now: cfg.Now}, nil
}

// Type returns "join_token".
func (*JoinToken) Type() string { return TypeJoinToken }

// Attest takes the payload as the token and consumes it. The token is
// deleted before its expiry is checked, so it is used up whatever happens
// next, as spire-server does. Attest never calls challenge.
func (j *JoinToken) Attest(ctx context.Context, payload []byte, _ ChallengeFunc) (Result, error) {
	id, err := j.agentID(string(payload))
	if err != nil {
		return Result{}, err
	}
	expiresAt, err := j.tokens.ConsumeJoinToken(ctx, string(payload))
	switch {
	case errors.Is(err, ErrJoinTokenNotFound):
		return Result{}, denied("join token does not exist or has already been used", nil,
			"a token attests one agent once: create a new one with treaty token generate and start the agent with it")
	case err != nil:
		return Result{}, fmt.Errorf("consume join token: %w", err)
	case j.now().After(expiresAt):
		return Result{}, denied("join token expired", nil,
			"the token is used up now: create a new one with treaty token generate (-ttl sets how long it lasts) and start the agent with it")
	}
	return Result{AgentID: id}, nil
}

// agentID is the ID the token gives. The token becomes one path segment of
// a SPIFFE ID, so it must be a valid one (SPIFFE ID §2.2): checked before
// the store is asked, so a token that could never name an agent is refused
// without touching it.
func (j *JoinToken) agentID(token string) (spiffeid.ID, error) {
	if token == "" {
		return spiffeid.ID{}, malformed("join token is empty", nil, "start the agent with -joinToken or join_token set")
	}
	id, err := spiffeid.FromSegments(j.td, "spire", "agent", TypeJoinToken, token)
	if err != nil {
		return spiffeid.ID{}, malformed("join token cannot be part of a SPIFFE ID", err,
			"tokens are letters, digits, '.', '-' and '_': check the agent's join_token setting")
	}
	return id, nil
}
