package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
)

// change is one lifecycle transition under construction. It works on copies
// of the authorities; commit writes it in one datastore transaction and only
// then makes it visible.
type change struct {
	c       *CA
	now     time.Time
	next    []*authority
	put     []*authority
	del     []datastore.AuthorityRef
	delKeys []string
	newKeys []string
	journal []datastore.JournalEvent
	// receipts are the partners' fetches automatic activation of an X.509
	// authority waits for (Config.Receipts).
	receipts []datastore.Receipt
}

// begin starts a change. The caller holds c.mu.
func (c *CA) begin() *change {
	ch := &change{c: c, now: c.cfg.Now()}
	for _, a := range c.authorities {
		cp := *a
		ch.next = append(ch.next, &cp)
	}
	return ch
}

func (ch *change) record(a *authority, event, detail string) {
	ch.journal = append(ch.journal, datastore.JournalEvent{
		At: ch.now, Kind: a.Kind, AuthorityID: a.ID, Event: event, Detail: detail,
	})
	ch.c.log.Info("authority lifecycle event", attrEvent, event, attrKind, a.Kind, attrAuthorityID, a.ID, attrReason, detail)
}

func (ch *change) touch(a *authority, event, detail string) {
	if !slices.Contains(ch.put, a) {
		ch.put = append(ch.put, a)
	}
	ch.record(a, event, detail)
}

func (ch *change) remove(a *authority, event, detail string) {
	kept := ch.next[:0]
	for _, n := range ch.next {
		if n != a {
			kept = append(kept, n)
		}
	}
	ch.next = kept
	ch.del = append(ch.del, datastore.AuthorityRef{Kind: a.Kind, ID: a.ID})
	if a.KeyName != "" {
		ch.delKeys = append(ch.delKeys, a.KeyName)
	}
	ch.record(a, event, detail)
}

// inState returns the authority of kind in state, the most recent first
// when there are several (old ones).
func (ch *change) inState(kind datastore.AuthorityKind, state datastore.AuthorityState) *authority {
	var found *authority
	for _, a := range ch.next {
		if a.Kind == kind && a.State == state && (found == nil || a.DeactivatedAt.After(found.DeactivatedAt)) {
			found = a
		}
	}
	return found
}

func (ch *change) find(kind datastore.AuthorityKind, id string) *authority {
	for _, a := range ch.next {
		if a.Kind == kind && a.ID == id {
			return a
		}
	}
	return nil
}

// prepare generates a key and authority of kind, saves the key file, and
// adds the authority as prepared.
func (ch *change) prepare(kind datastore.AuthorityKind, reason string) (*authority, error) {
	cfg := ch.c.cfg
	key, err := cfg.KeyType.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", kind, err)
	}
	var a *authority
	if kind == datastore.KindX509 {
		a, err = newX509Authority(cfg.TrustDomain, key, cfg.CATTL, ch.now, cfg.Upstream)
	} else {
		a, err = newJWTAuthority(key, cfg.CATTL, ch.now)
	}
	if err != nil {
		return nil, err
	}
	a.State, a.PreparedAt, a.KeyName = datastore.StatePrepared, ch.now, keyName(kind, a.ID)
	if err := cfg.Keys.Save(a.KeyName, key); err != nil {
		return nil, err
	}
	ch.newKeys = append(ch.newKeys, a.KeyName)
	ch.next = append(ch.next, a)
	ch.touch(a, "prepared", reason)
	return a, nil
}

// activate makes prepared the active authority and the current one old.
func (ch *change) activate(prepared *authority, reason string) {
	if active := ch.inState(prepared.Kind, datastore.StateActive); active != nil {
		active.State, active.DeactivatedAt = datastore.StateOld, ch.now
		ch.touch(active, "deactivated", "replaced by "+prepared.ID)
	}
	prepared.State, prepared.ActivatedAt = datastore.StateActive, ch.now
	ch.touch(prepared, "activated", reason)
}

// build returns the bundle published for the authorities of the change.
func (ch *change) build(seq uint64) *spiffebundle.Bundle {
	cfg := ch.c.cfg
	b := spiffebundle.New(cfg.TrustDomain)
	if cfg.Upstream != nil {
		for _, root := range cfg.Upstream.Roots {
			b.AddX509Authority(root)
		}
	}
	ordered := append([]*authority(nil), ch.next...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].NotBefore.Before(ordered[j].NotBefore) })
	for _, a := range ordered {
		switch {
		case a.Kind == datastore.KindJWT:
			_ = b.AddJWTAuthority(a.ID, a.public)
		case cfg.Upstream == nil || a.State == datastore.StateExternal:
			b.AddX509Authority(a.cert)
		}
	}
	b.SetRefreshHint(cfg.RefreshHint)
	b.SetSequenceNumber(seq)
	return b
}

// commit publishes the change: it builds the bundle, bumps the sequence if
// the bundle's bytes changed, writes everything in one transaction, and
// then swaps the in-memory state. The caller holds c.mu.
func (ch *change) commit(ctx context.Context) error {
	c := ch.c
	seq, _ := c.published.SequenceNumber()
	next := ch.build(seq)
	doc, err := bundle.Marshal(next)
	if err != nil {
		return ch.abort(fmt.Errorf("encode bundle: %w", err))
	}
	if bytes.Equal(doc, c.document) && len(ch.put) == 0 && len(ch.del) == 0 {
		return nil
	}
	if !bytes.Equal(doc, c.document) {
		next.SetSequenceNumber(seq + 1)
		if doc, err = bundle.Marshal(next); err != nil {
			return ch.abort(fmt.Errorf("encode bundle: %w", err))
		}
		ch.published(seq + 1)
	}
	if err := c.cfg.Store.CommitAuthorities(ctx, ch.datastoreChange(next, doc)); err != nil {
		err = ch.abort(err)
		if errors.Is(err, datastore.ErrAuthoritiesChanged) || errors.Is(err, datastore.ErrSequenceRegression) {
			if rerr := c.reloadLocked(ctx); rerr != nil {
				return fmt.Errorf("store authority change: %w (and reading the authorities again failed: %w)", err, rerr)
			}
			return ErrConflict
		}
		return fmt.Errorf("store authority change: %w", err)
	}
	c.revision++
	ch.apply(next, doc)
	return nil
}

// published records seq as the first bundle to hold the authorities the
// change writes without one: those it prepares, and (conservatively, later
// than they really were) ones stored before treaty kept the sequence.
func (ch *change) published(seq uint64) {
	for _, a := range ch.put {
		if a.PublishedSequence == 0 {
			a.PublishedSequence = seq
		}
	}
}

func (ch *change) datastoreChange(next *spiffebundle.Bundle, doc []byte) datastore.AuthorityChange {
	rev := ch.c.revision
	out := datastore.AuthorityChange{Delete: ch.del, Journal: ch.journal, IfRevision: &rev}
	for _, a := range ch.put {
		out.Put = append(out.Put, a.Authority)
	}
	if seq, _ := next.SequenceNumber(); !bytes.Equal(doc, ch.c.document) {
		out.LocalBundle = &datastore.Bundle{TrustDomain: next.TrustDomain(), Document: doc, Sequence: seq, UpdatedAt: ch.now}
	}
	return out
}

func (ch *change) apply(next *spiffebundle.Bundle, doc []byte) {
	c := ch.c
	if seq, _ := next.SequenceNumber(); !bytes.Equal(doc, c.document) {
		c.log.Info("local bundle updated", attrSequence, seq)
	}
	c.authorities, c.published, c.document = ch.next, next, doc
	c.forgetPublished()
	close(c.changed)
	c.changed = make(chan struct{})
	for _, name := range ch.delKeys {
		if err := c.cfg.Keys.Delete(name); err != nil {
			// The key is no longer referenced; the next start removes it.
			c.log.Warn("could not delete retired key", attrKey, name, attrError, err)
		}
	}
}

// abort removes key files written for a change that was not stored.
func (ch *change) abort(err error) error {
	for _, name := range ch.newKeys {
		_ = ch.c.cfg.Keys.Delete(name)
	}
	return err
}
