package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/profile"
)

// RelationshipStore is the persistence the TrustDomain service needs.
type RelationshipStore interface {
	ListRelationships(ctx context.Context) ([]datastore.Relationship, error)
	Relationship(ctx context.Context, td spiffeid.TrustDomain) (datastore.Relationship, error)
	CreateRelationships(ctx context.Context, rels []datastore.Relationship, bootstraps []*datastore.Bundle) ([]bool, []error)
	UpdateRelationship(ctx context.Context, r datastore.Relationship, bootstrap *datastore.Bundle) (bool, error)
	DeleteRelationship(ctx context.Context, td spiffeid.TrustDomain) error
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error)
}

// Refresher is the federation refresher as the admin API uses it.
type Refresher interface {
	Reload(ctx context.Context) error
	Refresh(ctx context.Context, td spiffeid.TrustDomain) error
	Status() []federation.Status
}

// trustDomainService implements SPIRE's TrustDomain API.
type trustDomainService struct {
	trustdomainv1.UnimplementedTrustDomainServer
	local     spiffeid.TrustDomain
	store     RelationshipStore
	refresher Refresher
	now       func() time.Time
}

func (s *trustDomainService) ListFederationRelationships(ctx context.Context, req *trustdomainv1.ListFederationRelationshipsRequest) (*trustdomainv1.ListFederationRelationshipsResponse, error) {
	if req.GetPageSize() < 0 {
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	}
	recs, err := s.store.ListRelationships(ctx)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &trustdomainv1.ListFederationRelationshipsResponse{}
	for _, rec := range recs {
		if rec.TrustDomain.Name() <= req.GetPageToken() {
			continue
		}
		if size := int(req.GetPageSize()); size > 0 && len(resp.FederationRelationships) == size {
			resp.NextPageToken = resp.FederationRelationships[size-1].GetTrustDomain()
			break
		}
		resp.FederationRelationships = append(resp.FederationRelationships, s.relationshipProto(ctx, rec, req.GetOutputMask()))
	}
	return resp, nil
}

func (s *trustDomainService) GetFederationRelationship(ctx context.Context, req *trustdomainv1.GetFederationRelationshipRequest) (*types.FederationRelationship, error) {
	td, err := spiffeid.TrustDomainFromString(req.GetTrustDomain())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "trust_domain %q: %v", req.GetTrustDomain(), err)
	}
	rec, err := s.store.Relationship(ctx, td)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no federation relationship with %q", td.Name())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return s.relationshipProto(ctx, rec, req.GetOutputMask()), nil
}

// relationshipProto converts a stored relationship; the trust domain
// bundle is the one we hold now, as SPIRE reports it.
func (s *trustDomainService) relationshipProto(ctx context.Context, rec datastore.Relationship, mask *types.FederationRelationshipMask) *types.FederationRelationship {
	out := &types.FederationRelationship{TrustDomain: rec.TrustDomain.Name()}
	if (mask == nil || mask.BundleEndpointUrl) && len(rec.EndpointURLs) > 0 {
		// Redacted: a relationship stored before userinfo was refused
		// may hold a password.
		out.BundleEndpointUrl = federation.RedactRawURL(rec.EndpointURLs[0])
	}
	if mask == nil || mask.BundleEndpointProfile {
		if rec.Profile == string(profile.HTTPSSPIFFE) {
			out.BundleEndpointProfile = &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: rec.EndpointSPIFFEID}}
		} else {
			out.BundleEndpointProfile = &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
		}
	}
	if mask == nil || mask.TrustDomainBundle {
		if b, err := s.store.FederatedBundle(ctx, rec.TrustDomain); err == nil {
			if sb, err := decodeStored(b); err == nil {
				out.TrustDomainBundle = bundlewire.ToProto(sb, nil, nil, nil)
			}
		}
	}
	return out
}

// fromRelationshipProto validates an API relationship. Problems name the
// field at fault.
func (s *trustDomainService) fromRelationshipProto(in *types.FederationRelationship) (federation.Relationship, *datastore.Bundle, error) {
	var rel federation.Relationship
	td, err := spiffeid.TrustDomainFromString(in.GetTrustDomain())
	if err != nil {
		return rel, nil, fmt.Errorf("trust_domain %q: %w", in.GetTrustDomain(), err)
	}
	if td == s.local {
		return rel, nil, fmt.Errorf("%q is this server's own trust domain; a relationship is with a partner", td.Name())
	}
	rel.TrustDomain = td
	u, err := url.Parse(in.GetBundleEndpointUrl())
	if err != nil || in.GetBundleEndpointUrl() == "" {
		return rel, nil, fmt.Errorf("bundle_endpoint_url %q is not a URL (want https://host:port)", federation.RedactRawURL(in.GetBundleEndpointUrl()))
	}
	if err := federation.CheckEndpointURL(u); err != nil {
		return rel, nil, fmt.Errorf("bundle_endpoint_url %w", err)
	}
	rel.BundleEndpointURLs = []*url.URL{u}
	switch p := in.GetBundleEndpointProfile().(type) {
	case *types.FederationRelationship_HttpsWeb:
		rel.Profile = profile.HTTPSWeb
	case *types.FederationRelationship_HttpsSpiffe:
		rel.Profile = profile.HTTPSSPIFFE
		if rel.EndpointSPIFFEID, err = spiffeid.FromString(p.HttpsSpiffe.GetEndpointSpiffeId()); err != nil {
			return rel, nil, fmt.Errorf("https_spiffe.endpoint_spiffe_id %q: %w", p.HttpsSpiffe.GetEndpointSpiffeId(), err)
		}
	default:
		return rel, nil, errors.New("bundle_endpoint_profile is required: https_web or https_spiffe")
	}
	boot, err := s.bootstrap(td, in.GetTrustDomainBundle())
	if err != nil {
		return rel, nil, err
	}
	return rel, boot, rel.Validate()
}

// bootstrap validates an optional bootstrap bundle and encodes it; nil
// in gives nil: the relationship has no bootstrap bundle.
func (s *trustDomainService) bootstrap(td spiffeid.TrustDomain, in *types.Bundle) (*datastore.Bundle, error) {
	if in == nil {
		return nil, nil //nolint:nilnil // no bootstrap bundle is a normal case
	}
	if in.GetTrustDomain() == "" {
		in.TrustDomain = td.Name()
	}
	b, err := bundlewire.FromProto(in)
	if err != nil {
		return nil, fmt.Errorf("trust_domain_bundle: %w", err)
	}
	if b.TrustDomain() != td {
		return nil, fmt.Errorf("trust_domain_bundle is for %q, not %q", b.TrustDomain().Name(), td.Name())
	}
	return encodeBootstrap(b, s.now())
}

func encodeBootstrap(b *spiffebundle.Bundle, now time.Time) (*datastore.Bundle, error) {
	doc, err := bundle.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("trust_domain_bundle: %w", err)
	}
	seq, _ := b.SequenceNumber()
	return &datastore.Bundle{TrustDomain: b.TrustDomain(), Document: doc, Sequence: seq, UpdatedAt: now}, nil
}

// BatchCreateFederationRelationship creates the relationships that are
// valid in one store transaction (a batch of thousands pays for one
// fsync); each gets its own result, in request order, as in SPIRE.
func (s *trustDomainService) BatchCreateFederationRelationship(ctx context.Context, req *trustdomainv1.BatchCreateFederationRelationshipRequest) (*trustdomainv1.BatchCreateFederationRelationshipResponse, error) {
	ins := req.GetFederationRelationships()
	resp := &trustdomainv1.BatchCreateFederationRelationshipResponse{Results: make([]*trustdomainv1.BatchCreateFederationRelationshipResponse_Result, len(ins))}
	var recs []datastore.Relationship
	var boots []*datastore.Bundle
	var index []int // index[j] is the request position of recs[j]
	now := s.now()
	for i, in := range ins {
		rel, boot, err := s.fromRelationshipProto(in)
		if err != nil {
			resp.Results[i] = &trustdomainv1.BatchCreateFederationRelationshipResponse_Result{Status: apiStatus(codes.InvalidArgument, "invalid federation relationship: %v", err)}
			continue
		}
		recs, boots, index = append(recs, rel.Record(now)), append(boots, boot), append(index, i)
	}
	_, errs := s.store.CreateRelationships(ctx, recs, boots)
	for j, err := range errs {
		out, st := s.created(ctx, recs[j], err, req.GetOutputMask())
		resp.Results[index[j]] = &trustdomainv1.BatchCreateFederationRelationshipResponse_Result{Status: st, FederationRelationship: out}
	}
	s.reload(ctx)
	return resp, nil
}

// created is the result of creating rec.
func (s *trustDomainService) created(ctx context.Context, rec datastore.Relationship, err error, mask *types.FederationRelationshipMask) (*types.FederationRelationship, *types.Status) {
	switch {
	case errors.Is(err, datastore.ErrAlreadyExists):
		return nil, apiStatus(codes.AlreadyExists, "a federation relationship with %q already exists; update it instead", rec.TrustDomain.Name())
	case err != nil:
		return nil, apiStatus(codes.Internal, "%v", err)
	}
	return s.relationshipProto(ctx, rec, mask), apiStatus(codes.OK, "OK")
}

func (s *trustDomainService) BatchUpdateFederationRelationship(ctx context.Context, req *trustdomainv1.BatchUpdateFederationRelationshipRequest) (*trustdomainv1.BatchUpdateFederationRelationshipResponse, error) {
	resp := &trustdomainv1.BatchUpdateFederationRelationshipResponse{}
	for _, in := range req.GetFederationRelationships() {
		out, st := s.update(ctx, in, req.GetInputMask(), req.GetOutputMask())
		resp.Results = append(resp.Results, &trustdomainv1.BatchUpdateFederationRelationshipResponse_Result{Status: st, FederationRelationship: out})
	}
	s.reload(ctx)
	return resp, nil
}

func (s *trustDomainService) update(ctx context.Context, in *types.FederationRelationship, inMask, outMask *types.FederationRelationshipMask) (*types.FederationRelationship, *types.Status) {
	td, err := spiffeid.TrustDomainFromString(in.GetTrustDomain())
	if err != nil {
		return nil, apiStatus(codes.InvalidArgument, "trust_domain %q: %v", in.GetTrustDomain(), err)
	}
	existing, err := s.store.Relationship(ctx, td)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, apiStatus(codes.NotFound, "no federation relationship with %q; create it first", td.Name())
	}
	if err != nil {
		return nil, apiStatus(codes.Internal, "%v", err)
	}
	if existing.ManagedBy != "" {
		return nil, apiStatus(codes.FailedPrecondition, "the relationship with %q is managed by %s; change that file instead", td.Name(), existing.ManagedBy)
	}
	rel, boot, err := s.fromRelationshipProto(mergeRelationship(s.relationshipProto(ctx, existing, nil), in, inMask))
	if err != nil {
		return nil, apiStatus(codes.InvalidArgument, "invalid federation relationship: %v", err)
	}
	// The API carries one URL: it replaces the primary, fallbacks stay.
	if len(existing.EndpointURLs) > 1 {
		for _, raw := range existing.EndpointURLs[1:] {
			if u, err := url.Parse(raw); err == nil {
				rel.BundleEndpointURLs = append(rel.BundleEndpointURLs, u)
			}
		}
		if err := rel.Validate(); err != nil {
			return nil, apiStatus(codes.InvalidArgument, "invalid federation relationship: %v; delete the relationship and create it again", err)
		}
	}
	rec := rel.Record(s.now())
	if _, err := s.store.UpdateRelationship(ctx, rec, boot); err != nil {
		return nil, apiStatus(codes.Internal, "%v", err)
	}
	return s.relationshipProto(ctx, rec, outMask), apiStatus(codes.OK, "OK")
}

// mergeRelationship applies the fields of in selected by mask (all when
// nil) to current. The bundle we hold is not resent as a bootstrap.
func mergeRelationship(current, in *types.FederationRelationship, mask *types.FederationRelationshipMask) *types.FederationRelationship {
	current.TrustDomainBundle = nil
	if mask == nil || mask.BundleEndpointUrl {
		current.BundleEndpointUrl = in.GetBundleEndpointUrl()
	}
	if mask == nil || mask.BundleEndpointProfile {
		current.BundleEndpointProfile = in.GetBundleEndpointProfile()
	}
	if mask == nil || mask.TrustDomainBundle {
		current.TrustDomainBundle = in.GetTrustDomainBundle()
	}
	return current
}

func (s *trustDomainService) BatchDeleteFederationRelationship(ctx context.Context, req *trustdomainv1.BatchDeleteFederationRelationshipRequest) (*trustdomainv1.BatchDeleteFederationRelationshipResponse, error) {
	resp := &trustdomainv1.BatchDeleteFederationRelationshipResponse{}
	for _, name := range req.GetTrustDomains() {
		resp.Results = append(resp.Results, &trustdomainv1.BatchDeleteFederationRelationshipResponse_Result{
			Status: s.delete(ctx, name), TrustDomain: name,
		})
	}
	s.reload(ctx)
	return resp, nil
}

func (s *trustDomainService) delete(ctx context.Context, name string) *types.Status {
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return apiStatus(codes.InvalidArgument, "trust domain %q: %v", name, err)
	}
	if existing, err := s.store.Relationship(ctx, td); err == nil && existing.ManagedBy != "" {
		return apiStatus(codes.FailedPrecondition, "the relationship with %q is managed by %s; remove that file instead", td.Name(), existing.ManagedBy)
	}
	err = s.store.DeleteRelationship(ctx, td)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return apiStatus(codes.NotFound, "no federation relationship with %q", td.Name())
	case err != nil:
		return apiStatus(codes.Internal, "%v", err)
	}
	return apiStatus(codes.OK, "OK")
}

func (s *trustDomainService) RefreshBundle(ctx context.Context, req *trustdomainv1.RefreshBundleRequest) (*emptypb.Empty, error) {
	td, err := spiffeid.TrustDomainFromString(req.GetTrustDomain())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "trust_domain %q: %v", req.GetTrustDomain(), err)
	}
	err = s.refresher.Refresh(ctx, td)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "no federation relationship with %q", td.Name())
	case err != nil:
		// Not Unavailable: that code means the admin API itself cannot be
		// reached, and clients say so. Here the server answered; the
		// partner's endpoint is what failed.
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &emptypb.Empty{}, nil
}

// reload tells the refresher about changed relationships. A failure only
// delays polling until the next reload; the change itself is stored.
func (s *trustDomainService) reload(ctx context.Context) {
	_ = s.refresher.Reload(ctx)
}
