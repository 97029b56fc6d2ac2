package adminapi

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/federation"
)

// StatusMethod is the full name of treaty's federation status call. SPIRE's
// API has no freshness report, so treaty adds one small service; it uses
// well-known protobuf types so that it needs no generated code, and any
// gRPC client can call it.
const StatusMethod = "/treaty.admin.v1.Federation/Status"

// statusServiceDesc describes the service to grpc.Server.
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
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: StatusMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return s.status(ctx, req.(*emptypb.Empty))
			})
		},
	}},
	Streams: []grpc.StreamDesc{},
}

type statusService struct {
	refresher      Refresher
	endpointExpiry func() time.Time
	gaps           func() []FederationGap
}

// FederationGap is a registration entry that federates with a trust domain
// the server holds no bundle for.
type FederationGap struct {
	EntryID, SPIFFEID, TrustDomain string
}

// status returns {"relationships": [ {...}, ... ]} with the fields of
// federation.Status in snake_case; times are RFC 3339, durations seconds.
func (s *statusService) status(context.Context, *emptypb.Empty) (*structpb.Struct, error) {
	var list []any
	for _, st := range s.refresher.Status() {
		list = append(list, statusMap(st))
	}
	out := map[string]any{"relationships": list}
	if s.endpointExpiry != nil {
		out["bundle_endpoint_certificate_expiry"] = timeString(s.endpointExpiry())
	}
	if s.gaps != nil {
		var gaps []any
		for _, g := range s.gaps() {
			gaps = append(gaps, map[string]any{"entry_id": g.EntryID, "spiffe_id": g.SPIFFEID, "trust_domain": g.TrustDomain})
		}
		out["federation_gaps"] = gaps
	}
	return structpb.NewStruct(out)
}

func statusMap(st federation.Status) map[string]any {
	warnings := make([]any, len(st.Warnings))
	for i, w := range st.Warnings {
		warnings[i] = w
	}
	return map[string]any{
		"trust_domain":         st.TrustDomain,
		"state":                string(st.State),
		"endpoint":             st.Endpoint,
		"last_attempt":         timeString(st.LastAttempt),
		"last_success":         timeString(st.LastSuccess),
		"next_attempt":         timeString(st.NextAttempt),
		"consecutive_failures": float64(st.ConsecutiveFailures),
		"last_error":           st.LastError,
		"last_reason":          st.LastReason,
		"warnings":             warnings,
		"has_bundle":           st.HasBundle,
		"sequence":             float64(st.Sequence),
		"bundle_updated":       timeString(st.BundleUpdated),
		"earliest_expiry":      timeString(st.EarliestExpiry),
		"refresh_hint_seconds": st.RefreshHint.Seconds(),
	}
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
