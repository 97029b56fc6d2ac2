package spiregw

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"google.golang.org/grpc/codes"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/datastore"
)

// SinkStore is what the sink reads: the relationships treaty manages and
// the partner bundles it holds for them.
type SinkStore interface {
	ListRelationships(ctx context.Context) ([]datastore.Relationship, error)
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error)
}

// retryEvery is how often the sink tries again when SPIRE refused or could
// not be reached, and reconciles even without a change.
const retryEvery = 10 * time.Second

// Sink writes the bundles of treaty's partners into the SPIRE server, so
// that SPIRE's agents deliver them to workloads whose entries federate with
// them. It writes a bundle only when it changed since it last wrote it, and
// only for trust domains treaty has a relationship with and SPIRE does not
// federate with itself: it never overwrites a bundle it does not manage.
// When a relationship goes, its bundle is deleted from SPIRE unless SPIRE
// still has entries federating with it (then it stays, and the log says
// so). Writes SPIRE could not take are tried again until they succeed.
type Sink struct {
	g       *Gateway
	store   SinkStore
	changed func() <-chan struct{}
	log     *slog.Logger
	// written holds, per trust domain, the digest of the bundle last
	// written into SPIRE.
	written map[spiffeid.TrustDomain][sha256.Size]byte
}

// NewSink returns a sink that writes store's partner bundles into the SPIRE
// server of g, at every close of the channel changed returns (the
// refresher's) and every retryEvery.
func NewSink(g *Gateway, store SinkStore, changed func() <-chan struct{}, log *slog.Logger) *Sink {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sink{g: g, store: store, changed: changed, log: log, written: map[spiffeid.TrustDomain][sha256.Size]byte{}}
}

// Run reconciles until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		changed := s.changed()
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("could not write partner bundles into the SPIRE server; will retry", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

// Reconcile writes the partner bundles SPIRE lacks or holds an older
// version of, and deletes those of relationships that are gone.
func (s *Sink) Reconcile(ctx context.Context) error {
	rels, err := s.store.ListRelationships(ctx)
	if err != nil {
		return err
	}
	own, err := s.spireFederates(ctx)
	if err != nil {
		return err
	}
	want := map[spiffeid.TrustDomain]bool{}
	var batch []datastore.Bundle
	for _, r := range rels {
		if own[r.TrustDomain] {
			s.log.Warn("the SPIRE server federates with this trust domain itself; treaty leaves its bundle in SPIRE alone",
				"trust_domain", r.TrustDomain.Name())
			continue
		}
		want[r.TrustDomain] = true
		b, err := s.store.FederatedBundle(ctx, r.TrustDomain)
		if errors.Is(err, datastore.ErrNotFound) {
			continue // not fetched yet
		}
		if err != nil {
			return err
		}
		if s.written[r.TrustDomain] != sha256.Sum256(b.Document) {
			batch = append(batch, b)
		}
	}
	var errs []error
	if len(batch) > 0 {
		errs = append(errs, s.write(ctx, batch))
	}
	for td := range s.written {
		if !want[td] {
			errs = append(errs, s.remove(ctx, td))
		}
	}
	return errors.Join(errs...)
}

// spireFederates returns the trust domains the SPIRE server has its own
// federation relationships with.
func (s *Sink) spireFederates(ctx context.Context) (map[spiffeid.TrustDomain]bool, error) {
	out := map[spiffeid.TrustDomain]bool{}
	token := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := s.g.tds.ListFederationRelationships(cctx, &trustdomainv1.ListFederationRelationshipsRequest{PageToken: token, PageSize: 1000})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list the SPIRE server's federation relationships: %w", err)
		}
		for _, r := range resp.GetFederationRelationships() {
			if td, err := spiffeid.TrustDomainFromString(r.GetTrustDomain()); err == nil {
				out[td] = true
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// write sets the bundles in SPIRE, as many as one call takes at a time.
func (s *Sink) write(ctx context.Context, bundles []datastore.Bundle) error {
	const perCall = 100
	var errs []error
	for lo := 0; lo < len(bundles); lo += perCall {
		part := bundles[lo:min(lo+perCall, len(bundles))]
		req := &bundlev1.BatchSetFederatedBundleRequest{}
		for _, b := range part {
			res, err := bundle.Parse(b.TrustDomain, b.Document, bundle.Options{})
			if err != nil {
				errs = append(errs, fmt.Errorf("bundle of %s: %w", b.TrustDomain.Name(), err))
				continue
			}
			res.Bundle.SetSequenceNumber(b.Sequence)
			req.Bundle = append(req.Bundle, bundlewire.ToProto(res.Bundle, nil, nil, nil))
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := s.g.bundles.BatchSetFederatedBundle(cctx, req)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("write %d partner bundles into the SPIRE server: %w", len(req.Bundle), err))
			continue
		}
		for i, r := range resp.GetResults() {
			td := spiffeid.RequireTrustDomainFromString(req.Bundle[i].GetTrustDomain())
			if code := statusCode(r.GetStatus().GetCode()); code != codes.OK {
				errs = append(errs, fmt.Errorf("the SPIRE server refused the bundle of %s: %s", td.Name(), r.GetStatus().GetMessage()))
				continue
			}
			for _, b := range part {
				if b.TrustDomain == td {
					s.written[td] = sha256.Sum256(b.Document)
					s.log.Info("partner bundle written into the SPIRE server", "trust_domain", td.Name(), "sequence", b.Sequence)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// remove deletes the bundle of a relationship that is gone, unless SPIRE
// still has entries federating with it.
func (s *Sink) remove(ctx context.Context, td spiffeid.TrustDomain) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := s.g.bundles.BatchDeleteFederatedBundle(cctx, &bundlev1.BatchDeleteFederatedBundleRequest{
		TrustDomains: []string{td.Name()}, Mode: bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT,
	})
	if err != nil {
		return fmt.Errorf("delete the bundle of %s from the SPIRE server: %w", td.Name(), err)
	}
	delete(s.written, td)
	for _, r := range resp.GetResults() {
		switch statusCode(r.GetStatus().GetCode()) {
		case codes.OK, codes.NotFound:
			s.log.Info("partner bundle deleted from the SPIRE server: the relationship is gone", "trust_domain", td.Name())
		default:
			s.log.Warn("the SPIRE server keeps the bundle of a partner treaty no longer federates with, as it refused to delete it "+
				"(entries there still federate with it: remove them, or delete the bundle with spire-server bundle delete -mode dissociate)",
				"trust_domain", td.Name(), "reason", r.GetStatus().GetMessage())
		}
	}
	return nil
}

// statusCode reads a batch result's gRPC code; codes are small and never
// negative, and anything else is Unknown.
func statusCode(c int32) codes.Code {
	if c < 0 {
		return codes.Unknown
	}
	return codes.Code(c)
}
