package ca

import (
	"context"
	"slices"
	"strings"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Receipts lists partners' authenticated fetches of the local bundle
// (datastore.Receipt): the partners the CA knows something about. A partner
// without a receipt (a SPIRE server, a static consumer) is unknown.
type Receipts interface {
	ListReceipts(ctx context.Context) ([]datastore.Receipt, error)
}

// Coverage says which partners with receipts hold the prepared X.509
// authority: those whose last fetch was served a bundle with a sequence at
// least the one that first published it.
type Coverage struct {
	AuthorityID string
	// Sequence is the spiffe_sequence of the first local bundle known to
	// publish the authority (after a restart, the one published then).
	Sequence   uint64
	Have, Lack []datastore.Receipt
}

// Lacking returns the names of the trust domains in c.Lack.
func (c Coverage) Lacking() []string {
	names := make([]string, len(c.Lack))
	for i, r := range c.Lack {
		names[i] = r.TrustDomain.Name()
	}
	return names
}

// NextAuthorityCoverage returns the Coverage of the prepared X.509
// authority; ok is false when none is prepared. Without Config.Receipts
// every partner is unknown and the coverage is empty.
func (c *CA) NextAuthorityCoverage(ctx context.Context) (cov Coverage, ok bool, err error) {
	receipts, err := c.receiptsIfPrepared(ctx)
	if err != nil {
		return Coverage{}, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prepared := c.begin().inState(datastore.KindX509, datastore.StatePrepared)
	if prepared == nil {
		return Coverage{}, false, nil
	}
	return c.coverage(prepared, receipts), true, nil
}

// receiptsIfPrepared reads the receipts while an X.509 authority is
// prepared, the only time they matter; none otherwise, without I/O.
func (c *CA) receiptsIfPrepared(ctx context.Context) ([]datastore.Receipt, error) {
	if c.cfg.Receipts == nil || c.State(datastore.KindX509).Prepared == nil {
		return nil, nil
	}
	return c.cfg.Receipts.ListReceipts(ctx)
}

// coverage sorts receipts by whether they hold prepared. The caller holds
// c.mu.
func (c *CA) coverage(prepared *authority, receipts []datastore.Receipt) Coverage {
	cov := Coverage{AuthorityID: prepared.ID, Sequence: c.firstPublished(prepared.ID)}
	for _, r := range receipts {
		if r.Sequence >= cov.Sequence {
			cov.Have = append(cov.Have, r)
		} else {
			cov.Lack = append(cov.Lack, r)
		}
	}
	return cov
}

// firstPublished returns the sequence of the first local bundle known to
// hold the authority id. One prepared by another replica, or before a
// restart, counts from the bundle published when first asked: later than
// the real one, so a partner is never taken to hold an authority it may
// lack. The caller holds c.mu.
func (c *CA) firstPublished(id string) uint64 {
	if seq, ok := c.firstSeq[id]; ok {
		return seq
	}
	seq, _ := c.published.SequenceNumber()
	c.firstSeq[id] = seq
	return seq
}

// notePublished records the sequence of the bundle that first holds each
// prepared X.509 authority of the change, and forgets authorities gone.
// The caller holds c.mu.
func (c *CA) notePublished(seq uint64) {
	for _, a := range c.authorities {
		if a.Kind == datastore.KindX509 && a.State == datastore.StatePrepared {
			if _, ok := c.firstSeq[a.ID]; !ok {
				c.firstSeq[a.ID] = seq
			}
		}
	}
	for id := range c.firstSeq {
		if !slices.ContainsFunc(c.authorities, func(a *authority) bool { return a.ID == id && a.State == datastore.StatePrepared }) {
			delete(c.firstSeq, id)
		}
	}
}

// waitFor logs, once per set of partners, that activation waits for them.
// The caller holds c.mu.
func (c *CA) waitFor(prepared *authority, cov Coverage) {
	names := strings.Join(cov.Lacking(), ",")
	if c.waiting == prepared.ID+" "+names {
		return
	}
	c.waiting = prepared.ID + " " + names
	c.log.Warn("next X.509 authority waits for partners to fetch it before it is activated",
		attrAuthorityID, prepared.ID, attrPartners, names, attrSequence, cov.Sequence)
}
