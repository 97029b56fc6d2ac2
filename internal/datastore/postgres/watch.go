package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
)

// Watch calls changed with the topics of the changes other replicas (and
// this one) commit, as PostgreSQL announces them (LISTEN/NOTIFY), until ctx
// ends. Announcements that arrive together are delivered together, each
// topic once. While the connection is down announcements are lost, so
// after every reconnection Watch delivers sqlstore.TopicAll: read
// everything again. Connected reports the connection's state as it
// changes, for readiness.
func (s *Store) Watch(ctx context.Context, changed func(topics []string), connected func(up bool, err error), log *slog.Logger) {
	const maxPause = 10 * time.Second
	pause := 250 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		conn, err := s.listen(ctx)
		if err != nil {
			connected(false, s.explain(err))
			log.Warn("cannot listen for other replicas' changes; will retry", "error", s.explain(err), "retry_in", pause)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, maxPause)
			continue
		}
		pause = 250 * time.Millisecond
		connected(true, nil)
		if !first {
			changed([]string{sqlstore.TopicAll})
		}
		first = false
		err = deliver(ctx, conn, changed)
		_ = conn.Close(context.WithoutCancel(ctx))
		if ctx.Err() == nil {
			connected(false, s.explain(err))
			log.Warn("lost the connection that hears other replicas' changes; reconnecting", "error", err)
		}
	}
}

func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pc)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// gather is how long deliver waits for more announcements before it
// delivers those it has: a change of many records announces many topics.
const gather = 20 * time.Millisecond

// deliver passes announcements on until the connection fails or ctx ends.
func deliver(ctx context.Context, conn *pgx.Conn, changed func([]string)) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		topics := []string{n.Payload}
		seen := map[string]bool{n.Payload: true}
		for {
			wctx, cancel := context.WithTimeout(ctx, gather)
			n, err = conn.WaitForNotification(wctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
					break
				}
				changed(topics)
				return err
			}
			if !seen[n.Payload] {
				seen[n.Payload] = true
				topics = append(topics, n.Payload)
			}
		}
		changed(topics)
	}
}
