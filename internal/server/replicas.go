package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
)

// watcher is a datastore that tells of the changes other replicas commit
// (postgres.Store).
type watcher interface {
	Watch(ctx context.Context, changed func(topics []string), connected func(up bool, err error), log *slog.Logger)
}

// replicaLink is this replica's view of its link to the shared datastore:
// whether it hears other replicas' changes, for /readyz.
type replicaLink struct {
	mu    sync.Mutex
	down  error
	since time.Time
}

func (l *replicaLink) set(up bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case up:
		l.down = nil
	case l.down == nil:
		l.down, l.since = err, time.Now()
	default:
		l.down = err
	}
}

// err says why the datastore is not usable, or nil.
func (l *replicaLink) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down == nil {
		return nil
	}
	return fmt.Errorf("datastore unreachable since %s (%w): serving the last good bundle and SVIDs from memory; "+
		"changes cannot be saved until it is back", l.since.UTC().Format(time.RFC3339), l.down)
}

// followReplicas applies the changes other replicas commit to this one's
// memory until ctx ends: the CA's authorities and bundle, partners' bundles
// and relationships, and the entries the Workload and agent APIs serve.
func (s *Server) followReplicas(ctx context.Context, w watcher) error {
	w.Watch(ctx, func(topics []string) { s.applyChanges(ctx, topics) }, s.link.set, s.log)
	return nil
}

// applyChanges reads again what topics name (sqlstore.Topic*).
func (s *Server) applyChanges(ctx context.Context, topics []string) {
	var authorities, relationships, entries bool
	var bundles []spiffeid.TrustDomain
	for _, topic := range topics {
		switch {
		case topic == sqlstore.TopicAll:
			authorities, relationships, entries = true, true, true
		case topic == sqlstore.TopicAuthorities:
			authorities = true
		case topic == sqlstore.TopicRelationships:
			relationships = true
		case topic == sqlstore.TopicEntries:
			entries = true
		case strings.HasPrefix(topic, sqlstore.TopicBundlePrefix):
			if td, err := spiffeid.TrustDomainFromString(strings.TrimPrefix(topic, sqlstore.TopicBundlePrefix)); err == nil {
				bundles = append(bundles, td)
			}
		}
	}
	if authorities {
		if err := s.ca.Reload(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reading the authorities another replica changed failed; the next periodic check retries", attrError, err)
		}
	}
	if relationships {
		if err := s.refresher.Reload(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reading the relationships another replica changed failed", attrError, err)
		}
	}
	if slices.Contains(topics, sqlstore.TopicAll) {
		for _, st := range s.refresher.Status() {
			if td, err := spiffeid.TrustDomainFromString(st.TrustDomain); err == nil {
				bundles = append(bundles, td)
			}
		}
	}
	for _, td := range bundles {
		if err := s.refresher.BundleChanged(ctx, td); err != nil && ctx.Err() == nil {
			s.log.Error("reading the bundle another replica stored failed", attrTrustDomain, td.Name(), attrError, err)
		}
	}
	if entries {
		s.entriesChanged(ctx)
	}
}

// confirmBundle returns what the bundle endpoint calls before each answer
// when replicas share the datastore (ca.CA.Confirm), nil otherwise.
func (s *Server) confirmBundle() func(context.Context) error {
	if !s.shared() {
		return nil
	}
	return s.ca.Confirm
}
