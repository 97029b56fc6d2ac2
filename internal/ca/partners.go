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

// Coverage says which partners with receipts hold a prepared authority:
// those whose last fetch was served a bundle with a sequence at least the
// one that first published it.
type Coverage struct {
	Kind        datastore.AuthorityKind
	AuthorityID string
	// Sequence is the spiffe_sequence of the first local bundle that held
	// the authority (datastore.Authority.PublishedSequence).
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

// NextAuthorityCoverage returns the Coverage of the prepared authority of
// kind; ok is false when none is prepared. Without Config.Receipts every
// partner is unknown and the coverage is empty.
func (c *CA) NextAuthorityCoverage(ctx context.Context, kind datastore.AuthorityKind) (cov Coverage, ok bool, err error) {
	receipts, err := c.receiptsIfPrepared(ctx)
	if err != nil {
		return Coverage{}, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prepared := c.begin().inState(kind, datastore.StatePrepared)
	if prepared == nil || !c.partnersNeed(prepared) {
		return Coverage{}, false, nil
	}
	return c.coverage(prepared, receipts), true, nil
}

// partnersNeed reports whether partners must fetch a bundle holding a
// before SVIDs it signs verify for them: every authority but an X.509 one
// an upstream CA signs, which partners trust through the upstream root
// their bundle holds already.
func (c *CA) partnersNeed(a *authority) bool {
	return a.Kind != datastore.KindX509 || c.cfg.Upstream == nil
}

// receiptsIfPrepared reads the receipts while an authority is prepared,
// the only time they matter; none otherwise, without I/O.
func (c *CA) receiptsIfPrepared(ctx context.Context) ([]datastore.Receipt, error) {
	if c.cfg.Receipts == nil || !c.anyPrepared() {
		return nil, nil
	}
	return c.cfg.Receipts.ListReceipts(ctx)
}

// anyPrepared reports whether an authority of either kind is prepared.
func (c *CA) anyPrepared() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.authorities, func(a *authority) bool { return a.State == datastore.StatePrepared })
}

// coverage sorts receipts by whether they hold prepared. The caller holds
// c.mu.
func (c *CA) coverage(prepared *authority, receipts []datastore.Receipt) Coverage {
	cov := Coverage{Kind: prepared.Kind, AuthorityID: prepared.ID, Sequence: c.firstPublished(prepared)}
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
// hold a. One stored before treaty kept that sequence counts from the
// bundle published when first asked: later than the real one, so a partner
// is never taken to hold an authority it may lack. The caller holds c.mu.
func (c *CA) firstPublished(a *authority) uint64 {
	if a.PublishedSequence != 0 {
		return a.PublishedSequence
	}
	if seq, ok := c.firstSeq[a.ID]; ok {
		return seq
	}
	seq, _ := c.published.SequenceNumber()
	c.firstSeq[a.ID] = seq
	return seq
}

// forgetPublished drops the remembered sequences of authorities no longer
// prepared. The caller holds c.mu.
func (c *CA) forgetPublished() {
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
	if c.waiting[prepared.Kind] == prepared.ID+" "+names {
		return
	}
	c.waiting[prepared.Kind] = prepared.ID + " " + names
	c.log.Warn("next authority waits for partners to fetch it before it is activated",
		attrKind, prepared.Kind, attrAuthorityID, prepared.ID, attrPartners, names, attrSequence, cov.Sequence)
}
