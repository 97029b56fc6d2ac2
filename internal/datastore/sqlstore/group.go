package sqlstore

import (
	"context"
	"fmt"
	"sync"
)

// group commits concurrent writes together: the writes that arrive while
// one transaction commits share the next one, so N writers waiting at once
// pay for one fsync (synchronous=FULL) instead of N. This is what makes the
// first sync of thousands of partners, whose bundles arrive from several
// refresher workers at once, cheap.
//
// Each write runs in its own savepoint: one that fails is rolled back alone
// and its caller gets its error, while the others commit. No caller hears
// of success before the transaction holding its write has committed.
type group struct {
	db *DB

	mu      sync.Mutex
	pending []*write
	leading bool
}

// write is one caller's change, waiting for its outcome.
type write struct {
	fn   func(*Tx) error
	done chan error
	// lead is closed when this write's caller is to commit the next batch.
	lead chan struct{}
}

// maxGroup bounds how many writes one transaction carries.
const maxGroup = 256

// do runs fn in a transaction shared with the writes waiting at the same
// time. fn must not depend on the caller's context being live: a write
// that was interrupted halfway would abort the shared transaction, so the
// writes given to do use a context without cancellation (they are short,
// and SQLite's busy timeout bounds the wait for the lock).
func (g *group) do(ctx context.Context, fn func(*Tx) error) error {
	if !g.db.d.GroupWrites {
		return g.alone(ctx, fn)
	}
	w := &write{fn: fn, done: make(chan error, 1), lead: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, w)
	if g.leading {
		g.mu.Unlock()
		select {
		case err := <-w.done:
			return err
		case <-w.lead:
		}
	} else {
		g.leading = true
		g.mu.Unlock()
	}
	g.commitNext(ctx)
	return <-w.done
}

// commitNext commits the pending writes (this caller's among them), then
// hands leadership to the first write still waiting, if any.
func (g *group) commitNext(ctx context.Context) {
	g.mu.Lock()
	n := min(len(g.pending), maxGroup)
	batch := g.pending[:n:n]
	g.pending = g.pending[n:]
	g.mu.Unlock()

	g.commit(ctx, batch)

	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) == 0 {
		g.leading = false
		return
	}
	close(g.pending[0].lead)
}

// commit runs batch in one transaction and tells every write its outcome.
func (g *group) commit(ctx context.Context, batch []*write) {
	errs, err := g.run(ctx, batch)
	for i, w := range batch {
		if err != nil {
			w.done <- err
			continue
		}
		w.done <- errs[i]
	}
}

// alone runs one write in its own transaction, for engines that do not
// group writes.
func (g *group) alone(ctx context.Context, fn func(*Tx) error) error {
	errs, err := g.run(ctx, []*write{{fn: fn}})
	if err != nil {
		return err
	}
	return errs[0]
}

// run applies batch, each write in a savepoint, and commits, running the
// whole batch again if the engine aborted the transaction for a conflict
// with a concurrent one. It returns each write's own error, or an error
// that applies to all of them. The transaction keeps ctx's values but not
// its cancellation: it carries other callers' writes too (see do).
func (g *group) run(ctx context.Context, batch []*write) ([]error, error) {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if errs, err = g.try(ctx, batch); err == nil || !g.retryable(err) {
			return errs, err
		}
		pause(attempt)
	}
	return errs, err
}

func (g *group) retryable(err error) bool { return g.db.d.again(err) }

// try is one attempt of run.
func (g *group) try(ctx context.Context, batch []*write) ([]error, error) {
	tx, err := g.db.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	errs := make([]error, len(batch))
	for i, w := range batch {
		errs[i] = inSavepoint(ctx, tx, w.fn)
		if errs[i] != nil && (isTxError(errs[i]) || g.retryable(errs[i])) {
			_ = tx.Rollback()
			return nil, errs[i]
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, &commitError{err}
	}
	return errs, nil
}

// txError is a failure of the transaction itself, not of one write.
type txError struct{ err error }

func (e *txError) Error() string { return e.err.Error() }
func (e *txError) Unwrap() error { return e.err }

func isTxError(err error) bool {
	_, ok := err.(*txError) //nolint:errorlint // only inSavepoint makes these, unwrapped
	return ok
}

// inSavepoint runs fn so that its changes can be undone alone.
func inSavepoint(ctx context.Context, tx *Tx, fn func(*Tx) error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
		return &txError{fmt.Errorf("savepoint: %w", err)}
	}
	if err := fn(tx); err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO w"); rerr != nil {
			return &txError{fmt.Errorf("roll back a failed write (%w): %w", err, rerr)}
		}
		if _, rerr := tx.ExecContext(ctx, "RELEASE w"); rerr != nil {
			return &txError{fmt.Errorf("release savepoint: %w", rerr)}
		}
		return err
	}
	if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
		return &txError{fmt.Errorf("release savepoint: %w", err)}
	}
	return nil
}
