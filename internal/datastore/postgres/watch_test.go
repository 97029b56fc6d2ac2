package postgres

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
	"github.com/treatyhq/treaty/internal/pgtest"
)

// heard collects the topics a Watch delivers.
type heard struct {
	mu     sync.Mutex
	topics []string
	up     []bool
}

func (h *heard) changed(topics []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.topics = append(h.topics, topics...)
}

func (h *heard) connected(up bool, _ error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up = append(h.up, up)
}

func (h *heard) has(topic string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.topics, topic)
}

func watch(t *testing.T, s *Store) *heard {
	t.Helper()
	h := &heard{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(ctx, h.changed, h.connected, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.up) > 0 && h.up[0] }, 30*time.Second, 10*time.Millisecond)
	return h
}

// A replica hears of what another commits, by topic, and only once it is
// committed.
func TestWatchHearsOtherReplicasChanges(t *testing.T) {
	c, dsn := pgtest.NewDatabase(t)
	listener, err := Open(t.Context(), Config{DSN: dsn, Password: c.Password})
	require.NoError(t, err)
	defer listener.Close()
	writer, err := Open(t.Context(), Config{DSN: dsn, Password: c.Password})
	require.NoError(t, err)
	defer writer.Close()
	h := watch(t, listener)
	ctx := t.Context()

	partner := spiffeid.RequireTrustDomainFromString("beta.test")
	steps := []struct {
		topic string
		write func() error
	}{
		{sqlstore.TopicAuthorities, func() error {
			return writer.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
				TrustDomain: spiffeid.RequireTrustDomainFromString("alpha.test"), Document: []byte("{}"), Sequence: 1}})
		}},
		{sqlstore.TopicRelationships, func() error {
			_, err := writer.CreateRelationship(ctx, datastore.Relationship{TrustDomain: partner, EndpointURLs: []string{"https://beta"}, Profile: "https_web"}, nil)
			return err
		}},
		{sqlstore.TopicBundlePrefix + "beta.test", func() error {
			return writer.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: partner, Document: []byte("{}"), Sequence: 7})
		}},
		{sqlstore.TopicEntries, func() error {
			_, err := writer.CreateEntry(ctx, datastore.Entry{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/w"),
				ParentID: spiffeid.RequireFromString("spiffe://alpha.test/n"), Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}}})
			return err
		}},
	}
	for _, step := range steps {
		require.NoError(t, step.write())
		require.Eventually(t, func() bool { return h.has(step.topic) }, 10*time.Second, 5*time.Millisecond, "topic %s", step.topic)
		time.Sleep(3 * gather) // the next one arrives on its own, after a quiet spell
	}

	// A refused change announces nothing.
	h.mu.Lock()
	before := len(h.topics)
	h.mu.Unlock()
	err = writer.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
		TrustDomain: spiffeid.RequireTrustDomainFromString("alpha.test"), Document: []byte("{}"), Sequence: 0}})
	require.ErrorIs(t, err, datastore.ErrSequenceRegression)
	time.Sleep(200 * time.Millisecond)
	h.mu.Lock()
	require.Len(t, h.topics, before, "a rolled-back change announced %v", h.topics[before:])
	require.NotContains(t, h.topics, sqlstore.TopicAll, "the connection never broke")
	h.mu.Unlock()
}

// When PostgreSQL restarts, the watcher reconnects by itself and says
// "read everything again", as announcements in between are lost.
func TestWatchReconnectsAfterARestart(t *testing.T) {
	c := pgtest.Start(t)
	dsn, err := c.CreateDatabase(t.Context())
	require.NoError(t, err)
	s, err := Open(t.Context(), Config{DSN: dsn, Password: c.Password})
	require.NoError(t, err)
	defer s.Close()
	h := watch(t, s)

	require.NoError(t, c.Kill())
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return slices.Contains(h.up, false) }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Restart())
	require.Eventually(t, func() bool { return h.has(sqlstore.TopicAll) }, 60*time.Second, 20*time.Millisecond)

	_, err = s.CreateEntry(t.Context(), datastore.Entry{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/w"),
		ParentID: spiffeid.RequireFromString("spiffe://alpha.test/n"), Selectors: []datastore.Selector{{Type: "unix", Value: "uid:1"}}})
	require.NoError(t, err, "the store's own pool reconnects too")
	require.Eventually(t, func() bool { return h.has(sqlstore.TopicEntries) }, 10*time.Second, 5*time.Millisecond)
}
