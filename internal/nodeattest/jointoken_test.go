package nodeattest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tokenStore is an in-memory TokenStore.
type tokenStore struct {
	mu     sync.Mutex
	tokens map[string]time.Time
	err    error // returned by every call when set
	calls  int
}

func (s *tokenStore) ConsumeJoinToken(_ context.Context, token string) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return time.Time{}, s.err
	}
	expiresAt, ok := s.tokens[token]
	if !ok {
		return time.Time{}, fmt.Errorf("token store: %w", ErrJoinTokenNotFound)
	}
	delete(s.tokens, token)
	return expiresAt, nil
}

func TestJoinToken(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const token = "3b8e5cfa-8c4f-4d1e-9a4e-1f2d3c4b5a69"
	tests := []struct {
		name      string
		payload   string
		expiresAt time.Time // of token in the store
		storeErr  error
		wantID    string
		wantErr   error
		wantMsg   string
		wantCalls int
	}{
		{name: "ok/valid token", payload: token, expiresAt: now.Add(time.Minute), wantCalls: 1,
			wantID: "spiffe://example.org/spire/agent/join_token/" + token},
		{name: "ok/expires this instant", payload: token, expiresAt: now, wantCalls: 1,
			wantID: "spiffe://example.org/spire/agent/join_token/" + token},
		{name: "fail/unknown token", payload: "not-" + token, expiresAt: now.Add(time.Minute), wantCalls: 1,
			wantErr: ErrDenied, wantMsg: "join token does not exist or has already been used; a token attests one agent once"},
		{name: "fail/expired token", payload: token, expiresAt: now.Add(-time.Second), wantCalls: 1,
			wantErr: ErrDenied, wantMsg: "join token expired; the token is used up now"},
		{name: "fail/empty token", payload: "", expiresAt: now.Add(time.Minute),
			wantErr: ErrMalformed, wantMsg: "join token is empty"},
		{name: "fail/token with a slash", payload: "a/b", expiresAt: now.Add(time.Minute),
			wantErr: ErrMalformed, wantMsg: "join token cannot be part of a SPIFFE ID: path segment characters are limited"},
		{name: "fail/dot token", payload: "..", expiresAt: now.Add(time.Minute),
			wantErr: ErrMalformed, wantMsg: "join token cannot be part of a SPIFFE ID: path cannot contain dot segments"},
		{name: "fail/store unavailable", payload: token, storeErr: errors.New("database is locked"), wantCalls: 1,
			wantErr: nil, wantMsg: "consume join token: database is locked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := &tokenStore{tokens: map[string]time.Time{token: tc.expiresAt}, err: tc.storeErr}
			j, err := NewJoinToken(JoinTokenConfig{TrustDomain: td, Tokens: store, Now: func() time.Time { return now }})
			require.NoError(t, err)
			challenge := func(context.Context, []byte) ([]byte, error) {
				t.Error("join_token sent a challenge")
				return nil, nil
			}

			res, err := j.Attest(context.Background(), []byte(tc.payload), challenge)
			require.Equal(t, tc.wantCalls, store.calls, "store calls")
			if tc.wantMsg != "" {
				require.ErrorContains(t, err, tc.wantMsg)
				requireOneKind(t, err, tc.wantErr)
				if tc.wantErr != nil {
					require.ErrorIs(t, err, tc.wantErr)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantID, res.AgentID.String())
			require.Empty(t, res.Selectors)
			require.False(t, res.CanReattest)
		})
	}
}

// TestJoinTokenSingleUse checks that a token is gone after its first use,
// whether that use succeeded or found it expired.
func TestJoinTokenSingleUse(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		expiresAt time.Time
		firstErr  error
	}{
		{name: "ok/used once", expiresAt: now.Add(time.Hour)},
		{name: "fail/expired and consumed", expiresAt: now.Add(-time.Hour), firstErr: ErrDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := &tokenStore{tokens: map[string]time.Time{"tok": tc.expiresAt}}
			j, err := NewJoinToken(JoinTokenConfig{TrustDomain: td, Tokens: store, Now: func() time.Time { return now }})
			require.NoError(t, err)

			_, err = j.Attest(context.Background(), []byte("tok"), nil)
			if tc.firstErr != nil {
				require.ErrorIs(t, err, tc.firstErr)
			} else {
				require.NoError(t, err)
			}
			require.Empty(t, store.tokens, "the token is deleted")
			_, err = j.Attest(context.Background(), []byte("tok"), nil)
			require.ErrorIs(t, err, ErrDenied)
			require.ErrorContains(t, err, "join token does not exist or has already been used")
		})
	}
}

// TestJoinTokenConcurrentUse checks that of many agents presenting one token
// at once, exactly one is attested.
func TestJoinTokenConcurrentUse(t *testing.T) {
	store := &tokenStore{tokens: map[string]time.Time{"tok": time.Now().Add(time.Hour)}}
	j, err := NewJoinToken(JoinTokenConfig{TrustDomain: td, Tokens: store})
	require.NoError(t, err)
	var wg sync.WaitGroup
	results := make(chan error, 16)
	for range cap(results) {
		wg.Go(func() {
			_, err := j.Attest(context.Background(), []byte("tok"), nil)
			results <- err
		})
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, ErrDenied)
	}
	require.Equal(t, 1, ok)
}

func TestNewJoinToken(t *testing.T) {
	tests := []struct {
		name    string
		cfg     JoinTokenConfig
		wantErr bool
	}{
		{name: "ok/defaults", cfg: JoinTokenConfig{TrustDomain: td, Tokens: &tokenStore{}}},
		{name: "fail/no trust domain", cfg: JoinTokenConfig{Tokens: &tokenStore{}}, wantErr: true},
		{name: "fail/no store", cfg: JoinTokenConfig{TrustDomain: td}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := NewJoinToken(tc.cfg)
			if tc.wantErr {
				require.ErrorContains(t, err, "join_token needs a trust domain and a token store")
				return
			}
			require.NoError(t, err)
			require.Equal(t, "join_token", j.Type())
		})
	}
}
