package adminapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/datastore"
)

// writeFunc stores one federated bundle.
type writeFunc func(context.Context, datastore.Bundle) error

// writeFederated validates in and stores it with write. The returned status
// is OK or says precisely what was wrong; nothing is written on error.
func (s *bundleService) writeFederated(ctx context.Context, in *types.Bundle, write writeFunc) (*spiffebundle.Bundle, *types.Status) {
	// Compare parsed names: spire-server sends "spiffe://td" for PEM bundles.
	if td, err := spiffeid.TrustDomainFromString(in.GetTrustDomain()); err == nil && td == s.ca.TrustDomain() {
		return nil, apiStatus(codes.InvalidArgument, "%q is this server's own trust domain: its bundle is managed by the CA, not set", td.Name())
	}
	b, err := bundlewire.FromProto(in)
	if err != nil {
		return nil, apiStatus(codes.InvalidArgument, "invalid bundle for %q: %v", in.GetTrustDomain(), err)
	}
	if b.Empty() {
		return nil, apiStatus(codes.InvalidArgument, "bundle for %q has no X.509 or JWT authorities: it could authenticate nothing", b.TrustDomain().Name())
	}
	doc, err := bundle.Marshal(b)
	if err != nil {
		return nil, apiStatus(codes.InvalidArgument, "encode bundle for %q: %v", b.TrustDomain().Name(), err)
	}
	seq, _ := b.SequenceNumber()
	err = write(ctx, datastore.Bundle{TrustDomain: b.TrustDomain(), Document: doc, Sequence: seq, UpdatedAt: time.Now()})
	switch {
	case errors.Is(err, datastore.ErrAlreadyExists):
		return nil, apiStatus(codes.AlreadyExists, "a bundle for %q already exists; update or set it instead", b.TrustDomain().Name())
	case errors.Is(err, datastore.ErrNotFound):
		return nil, apiStatus(codes.NotFound, "no bundle stored for %q; create or set it instead", b.TrustDomain().Name())
	case err != nil:
		return nil, apiStatus(codes.Internal, "store bundle for %q: %v", b.TrustDomain().Name(), err)
	}
	return b, apiStatus(codes.OK, "OK")
}

func apiStatus(code codes.Code, format string, args ...any) *types.Status {
	return &types.Status{Code: int32(code), Message: fmt.Sprintf(format, args...)} //nolint:gosec // gRPC codes are small
}

func (s *bundleService) BatchCreateFederatedBundle(ctx context.Context, req *bundlev1.BatchCreateFederatedBundleRequest) (*bundlev1.BatchCreateFederatedBundleResponse, error) {
	resp := &bundlev1.BatchCreateFederatedBundleResponse{}
	for _, in := range req.GetBundle() {
		b, st := s.writeFederated(ctx, in, s.store.CreateFederatedBundle)
		resp.Results = append(resp.Results, &bundlev1.BatchCreateFederatedBundleResponse_Result{Status: st, Bundle: maybeProto(b, req.GetOutputMask())})
	}
	return resp, nil
}

func (s *bundleService) BatchSetFederatedBundle(ctx context.Context, req *bundlev1.BatchSetFederatedBundleRequest) (*bundlev1.BatchSetFederatedBundleResponse, error) {
	resp := &bundlev1.BatchSetFederatedBundleResponse{}
	for _, in := range req.GetBundle() {
		b, st := s.writeFederated(ctx, in, s.store.SetFederatedBundle)
		resp.Results = append(resp.Results, &bundlev1.BatchSetFederatedBundleResponse_Result{Status: st, Bundle: maybeProto(b, req.GetOutputMask())})
	}
	return resp, nil
}

func (s *bundleService) BatchUpdateFederatedBundle(ctx context.Context, req *bundlev1.BatchUpdateFederatedBundleRequest) (*bundlev1.BatchUpdateFederatedBundleResponse, error) {
	resp := &bundlev1.BatchUpdateFederatedBundleResponse{}
	for _, in := range req.GetBundle() {
		merged, st := s.mergeUpdate(ctx, in, req.GetInputMask())
		var b *spiffebundle.Bundle
		if st == nil {
			b, st = s.writeFederated(ctx, merged, s.store.UpdateFederatedBundle)
		}
		resp.Results = append(resp.Results, &bundlev1.BatchUpdateFederatedBundleResponse_Result{Status: st, Bundle: maybeProto(b, req.GetOutputMask())})
	}
	return resp, nil
}

// mergeUpdate applies the fields of in selected by mask (all when nil) to
// the stored bundle, as SPIRE's BatchUpdateFederatedBundle does.
func (s *bundleService) mergeUpdate(ctx context.Context, in *types.Bundle, mask *types.BundleMask) (*types.Bundle, *types.Status) {
	if mask == nil {
		return in, nil
	}
	td, err := spiffeid.TrustDomainFromString(in.GetTrustDomain())
	if err != nil {
		return nil, apiStatus(codes.InvalidArgument, "trust_domain %q: %v", in.GetTrustDomain(), err)
	}
	rec, err := s.store.FederatedBundle(ctx, td)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, apiStatus(codes.NotFound, "no bundle stored for %q; create or set it instead", td.Name())
	}
	if err != nil {
		return nil, apiStatus(codes.Internal, "%v", err)
	}
	stored, err := decodeStored(rec)
	if err != nil {
		return nil, apiStatus(codes.Internal, "%v", err)
	}
	out := bundlewire.ToProto(stored, nil, nil, nil)
	if mask.X509Authorities {
		out.X509Authorities = in.GetX509Authorities()
	}
	if mask.JwtAuthorities {
		out.JwtAuthorities = in.GetJwtAuthorities()
	}
	if mask.RefreshHint {
		out.RefreshHint = in.GetRefreshHint()
	}
	if mask.SequenceNumber {
		out.SequenceNumber = in.GetSequenceNumber()
	}
	return out, nil
}

func maybeProto(b *spiffebundle.Bundle, mask *types.BundleMask) *types.Bundle {
	if b == nil {
		return nil
	}
	return bundlewire.ToProto(b, mask, nil, nil)
}

func (s *bundleService) BatchDeleteFederatedBundle(ctx context.Context, req *bundlev1.BatchDeleteFederatedBundleRequest) (*bundlev1.BatchDeleteFederatedBundleResponse, error) {
	if _, ok := bundlev1.BatchDeleteFederatedBundleRequest_Mode_name[int32(req.GetMode())]; !ok {
		return nil, status.Errorf(codes.InvalidArgument, "mode %d: use RESTRICT, DELETE or DISSOCIATE", req.GetMode())
	}
	resp := &bundlev1.BatchDeleteFederatedBundleResponse{}
	for _, name := range req.GetTrustDomains() {
		resp.Results = append(resp.Results, &bundlev1.BatchDeleteFederatedBundleResponse_Result{
			Status: s.deleteFederated(ctx, name, req.GetMode()), TrustDomain: name,
		})
	}
	return resp, nil
}

func (s *bundleService) deleteFederated(ctx context.Context, name string, mode bundlev1.BatchDeleteFederatedBundleRequest_Mode) *types.Status {
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return apiStatus(codes.InvalidArgument, "trust domain %q: %v", name, err)
	}
	if td == s.ca.TrustDomain() {
		return apiStatus(codes.InvalidArgument, "%q is this server's own trust domain; its bundle cannot be deleted", name)
	}
	if _, err := s.store.FederatedBundle(ctx, td); err != nil {
		return deleteStatus(name, err)
	}
	if st := s.settleEntries(ctx, td, mode); st != nil {
		return st
	}
	return deleteStatus(name, s.store.DeleteFederatedBundle(ctx, td))
}

func deleteStatus(name string, err error) *types.Status {
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return apiStatus(codes.NotFound, "no bundle stored for %q", name)
	case err != nil:
		return apiStatus(codes.Internal, "delete bundle for %q: %v", name, err)
	}
	return apiStatus(codes.OK, "OK")
}

// settleEntries does to the entries that name td in their federatesWith
// what SPIRE's datastore does before it deletes a bundle: RESTRICT refuses
// while there are any, DISSOCIATE removes td from them, DELETE deletes
// them. Entries that federate with every trust domain name none.
func (s *bundleService) settleEntries(ctx context.Context, td spiffeid.TrustDomain, mode bundlev1.BatchDeleteFederatedBundleRequest_Mode) *types.Status {
	if s.entries == nil {
		return nil
	}
	all, err := s.entries.ListEntries(ctx)
	if err != nil {
		return apiStatus(codes.Internal, "list entries federating with %q: %v", td.Name(), err)
	}
	var federating []datastore.Entry
	for _, e := range all {
		if slices.Contains(e.FederatesWith, td.Name()) {
			federating = append(federating, e)
		}
	}
	if len(federating) == 0 {
		return nil
	}
	switch mode {
	case bundlev1.BatchDeleteFederatedBundleRequest_DELETE:
		for _, e := range federating {
			if err := s.entries.DeleteEntry(ctx, e.ID); err != nil && !errors.Is(err, datastore.ErrNotFound) {
				return apiStatus(codes.Internal, "delete entry %s federating with %q: %v", e.ID, td.Name(), err)
			}
		}
	case bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE:
		for _, e := range federating {
			e.FederatesWith = slices.DeleteFunc(e.FederatesWith, func(n string) bool { return n == td.Name() })
			if _, err := s.entries.UpdateEntry(ctx, e); err != nil && !errors.Is(err, datastore.ErrNotFound) {
				return apiStatus(codes.Internal, "remove %q from entry %s: %v", td.Name(), e.ID, err)
			}
		}
	default:
		return apiStatus(codes.FailedPrecondition, "cannot delete the bundle of %q: %s with it (%s); delete with mode dissociate (bundle delete -mode dissociate) to remove the federation from them, or mode delete to delete them",
			td.Name(), plural(len(federating), "registration entry federates", "registration entries federate"), entryIDs(federating))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// entryIDs names up to three entries, then how many more.
func entryIDs(entries []datastore.Entry) string {
	var ids []string
	for i, e := range entries {
		if i == 3 {
			ids = append(ids, fmt.Sprintf("and %d more", len(entries)-3))
			break
		}
		ids = append(ids, e.ID)
	}
	return strings.Join(ids, ", ")
}
