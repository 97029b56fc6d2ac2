package agentapi

import (
	"context"
	"errors"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/nodeattest"
)

// TokenConsumer is the store's side of join tokens: it deletes a token and
// returns it, or an error wrapping datastore.ErrNotFound.
type TokenConsumer interface {
	ConsumeJoinToken(ctx context.Context, token string) (datastore.JoinToken, error)
}

// JoinTokens adapts the store's join tokens to the join_token attestor
// (nodeattest.TokenStore), which knows nothing of the datastore.
type JoinTokens struct{ Store TokenConsumer }

// ConsumeJoinToken implements nodeattest.TokenStore.
func (t JoinTokens) ConsumeJoinToken(ctx context.Context, token string) (time.Time, error) {
	tok, err := t.Store.ConsumeJoinToken(ctx, token)
	if errors.Is(err, datastore.ErrNotFound) {
		return time.Time{}, nodeattest.ErrJoinTokenNotFound
	}
	return tok.ExpiresAt, err
}
