package adminapi

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
)

// statusServiceDesc describes treaty's federation status service
// (adminwire.StatusMethod) to grpc.Server.
var statusServiceDesc = grpc.ServiceDesc{
	ServiceName: "treaty.admin.v1.Federation",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Status",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			s := srv.(*statusService)
			if interceptor == nil {
				return s.status(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: adminwire.StatusMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return s.status(ctx, req.(*emptypb.Empty))
			})
		},
	}},
	Streams: []grpc.StreamDesc{},
}

type statusService struct {
	refresher Refresher
	// relationships, when set, say which relationships onboarding files
	// manage.
	relationships  RelationshipStore
	endpointExpiry func() time.Time
	gaps           func() []FederationGap
	// authorities, when set, say which partners have the next authority.
	authorities LocalAuthorities
	// signedBundles, when set, reports the signed bundles directory.
	signedBundles func() []adminwire.SignedBundleFile
}

// FederationGap is a registration entry that federates with a trust domain
// the server holds no bundle for.
type FederationGap struct {
	EntryID, SPIFFEID, TrustDomain string
}

// status reports every relationship's freshness and the federation gaps.
func (s *statusService) status(ctx context.Context, _ *emptypb.Empty) (*structpb.Struct, error) {
	out := adminwire.StatusResponse{Relationships: []adminwire.RelationshipStatus{}, FederationGaps: []adminwire.FederationGap{}}
	managed, err := s.managedBy(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range s.refresher.Status() {
		r := relationshipStatus(st)
		r.ManagedBy = managed[st.TrustDomain]
		out.Relationships = append(out.Relationships, r)
	}
	if s.endpointExpiry != nil {
		out.BundleEndpointCertificateExpiry = timeString(s.endpointExpiry())
	}
	if s.gaps != nil {
		for _, g := range s.gaps() {
			out.FederationGaps = append(out.FederationGaps, adminwire.FederationGap{EntryID: g.EntryID, SPIFFEID: g.SPIFFEID, TrustDomain: g.TrustDomain})
		}
	}
	if s.signedBundles != nil {
		out.SignedBundles = s.signedBundles()
	}
	if s.authorities != nil {
		for _, k := range []struct {
			kind datastore.AuthorityKind
			next **adminwire.NextAuthority
		}{{datastore.KindX509, &out.NextAuthority}, {datastore.KindJWT, &out.NextJWTAuthority}} {
			cov, ok, err := s.authorities.NextAuthorityCoverage(ctx, k.kind)
			if err != nil {
				return nil, status.Errorf(codes.Unavailable, "read which partners fetched the bundle: %v", err)
			}
			if ok {
				*k.next = nextAuthority(cov)
			}
		}
	}
	return wireStruct(out)
}

// nextAuthority converts the coverage of a prepared authority.
func nextAuthority(cov ca.Coverage) *adminwire.NextAuthority {
	out := &adminwire.NextAuthority{AuthorityID: cov.AuthorityID, Sequence: cov.Sequence, Partners: []adminwire.Receipt{}}
	for _, r := range cov.Lack {
		out.Partners = append(out.Partners, adminwire.Receipt{TrustDomain: r.TrustDomain.Name(), Sequence: r.Sequence, FetchedAt: timeString(r.FetchedAt)})
	}
	for _, r := range cov.Have {
		out.Partners = append(out.Partners, adminwire.Receipt{TrustDomain: r.TrustDomain.Name(), Sequence: r.Sequence, FetchedAt: timeString(r.FetchedAt), HasNextAuthority: true})
	}
	return out
}

// managedBy maps the trust domains of relationships managed by onboarding
// files to their manager.
func (s *statusService) managedBy(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	if s.relationships == nil {
		return out, nil
	}
	rels, err := s.relationships.ListRelationships(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list relationships: %v", err)
	}
	for _, r := range rels {
		if r.ManagedBy != "" {
			out[r.TrustDomain.Name()] = r.ManagedBy
		}
	}
	return out, nil
}

func relationshipStatus(st federation.Status) adminwire.RelationshipStatus {
	return adminwire.RelationshipStatus{
		TrustDomain:         st.TrustDomain,
		State:               string(st.State),
		Endpoint:            st.Endpoint,
		LastAttempt:         timeString(st.LastAttempt),
		LastSuccess:         timeString(st.LastSuccess),
		NextAttempt:         timeString(st.NextAttempt),
		ConsecutiveFailures: st.ConsecutiveFailures,
		LastError:           st.LastError,
		LastReason:          st.LastReason,
		Warnings:            append([]string{}, st.Warnings...),
		HasBundle:           st.HasBundle,
		Sequence:            st.Sequence,
		BundleUpdated:       timeString(st.BundleUpdated),
		EarliestExpiry:      timeString(st.EarliestExpiry),
		RefreshHintSeconds:  st.RefreshHint.Seconds(),
		Ignored:             ignoredEntries(st.Ignored),
		PolledBy:            st.PolledBy,
	}
}

func ignoredEntries(in []bundle.Ignored) []adminwire.IgnoredEntry {
	out := make([]adminwire.IgnoredEntry, len(in))
	for i, ig := range in {
		out[i] = adminwire.IgnoredEntry{Index: ig.Index, Use: ig.Use, KeyID: ig.KeyID, Reason: string(ig.Check), Message: ig.Message}
	}
	return out
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
