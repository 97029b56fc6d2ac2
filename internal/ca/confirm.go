package ca

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Confirming the published bundle against the store costs one read; these
// bound what a slow or unreachable store costs the callers.
const (
	confirmTimeout = time.Second
	// confirmBackoff is how long after a failed read Confirm answers at
	// once with the failure instead of reading again: with the datastore
	// down, the bundle endpoint keeps serving from memory without waiting
	// on it for every request.
	confirmBackoff = 2 * time.Second
)

// errStoreUnavailable is what Confirm answers while it backs off.
var errStoreUnavailable = errors.New("the datastore did not answer the last confirmation")

// confirmer batches confirmations: callers queue while one read runs, and
// the next read answers all of them. Every caller's answer comes from a
// read that started after it called, so what it then serves is at least
// every bundle committed before it asked.
type confirmer struct {
	mu          sync.Mutex
	running     bool
	queued      []chan error
	failedUntil time.Time
}

// Confirm returns once the published bundle is at least the newest local
// bundle committed to the store when Confirm was called, reading it (and
// the authorities) again if another replica committed a newer one. When
// replicas share a store, the bundle endpoint confirms before it answers,
// so that a partner never sees the sequence go down from one replica to
// the next. An error means the store could not be read: the caller serves
// what it has.
func (c *CA) Confirm(ctx context.Context) error {
	f := &c.confirm
	f.mu.Lock()
	if time.Now().Before(f.failedUntil) {
		f.mu.Unlock()
		return errStoreUnavailable
	}
	done := make(chan error, 1)
	f.queued = append(f.queued, done)
	if !f.running {
		f.running = true
		go c.confirmQueued() //nolint:contextcheck // one read serves every caller waiting, so no one caller's context may cancel it
	}
	f.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// confirmQueued runs reads until nobody is waiting.
func (c *CA) confirmQueued() {
	f := &c.confirm
	for {
		f.mu.Lock()
		batch := f.queued
		f.queued = nil
		if len(batch) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		err := c.confirmOnce()
		if err != nil {
			f.mu.Lock()
			f.failedUntil = time.Now().Add(confirmBackoff)
			f.mu.Unlock()
		}
		for _, done := range batch {
			done <- err
		}
	}
}

func (c *CA) confirmOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
	defer cancel()
	stored, err := c.cfg.Store.LocalBundle(ctx)
	if err != nil {
		return err
	}
	_, cur := c.Document()
	if stored.Sequence <= cur {
		return nil
	}
	return c.Reload(ctx)
}
