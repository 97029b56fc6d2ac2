package adminapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
)

// LocalAuthorities are the local CA's authorities as the LocalAuthority API
// shows and changes them.
type LocalAuthorities interface {
	State(kind datastore.AuthorityKind) ca.State
	Prepare(ctx context.Context, kind datastore.AuthorityKind) (ca.AuthorityInfo, error)
	Activate(ctx context.Context, kind datastore.AuthorityKind, id string) (ca.AuthorityInfo, string, error)
	Taint(ctx context.Context, kind datastore.AuthorityKind, id string) (ca.AuthorityInfo, error)
	Revoke(ctx context.Context, kind datastore.AuthorityKind, id string) (ca.AuthorityInfo, error)
	TaintUpstream(ctx context.Context, skid string) (string, error)
	RevokeUpstream(ctx context.Context, skid string) (string, error)
	NextAuthorityCoverage(ctx context.Context, kind datastore.AuthorityKind) (ca.Coverage, bool, error)
}

// localAuthorityService implements SPIRE's LocalAuthority API for X.509
// authorities, JWT keys and the upstream authority that signed an old X.509
// authority. WIT authorities are not supported and answer Unimplemented.
type localAuthorityService struct {
	localauthorityv1.UnimplementedLocalAuthorityServer
	ca LocalAuthorities
}

func stateProto(info *ca.AuthorityInfo) *localauthorityv1.AuthorityState {
	if info == nil {
		return nil
	}
	return &localauthorityv1.AuthorityState{
		AuthorityId:                   info.ID,
		ExpiresAt:                     info.ExpiresAt.Unix(),
		UpstreamAuthoritySubjectKeyId: info.UpstreamSKID,
	}
}

func requireID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "authority_id is required; see it with `treaty localauthority x509 show` or `jwt show`")
	}
	return nil
}

func (s *localAuthorityService) GetX509AuthorityState(context.Context, *localauthorityv1.GetX509AuthorityStateRequest) (*localauthorityv1.GetX509AuthorityStateResponse, error) {
	st := s.ca.State(datastore.KindX509)
	return &localauthorityv1.GetX509AuthorityStateResponse{Active: stateProto(st.Active), Prepared: stateProto(st.Prepared), Old: stateProto(st.Old)}, nil
}

func (s *localAuthorityService) GetJWTAuthorityState(context.Context, *localauthorityv1.GetJWTAuthorityStateRequest) (*localauthorityv1.GetJWTAuthorityStateResponse, error) {
	st := s.ca.State(datastore.KindJWT)
	return &localauthorityv1.GetJWTAuthorityStateResponse{Active: stateProto(st.Active), Prepared: stateProto(st.Prepared), Old: stateProto(st.Old)}, nil
}

// change runs one lifecycle action and converts its result; id, when
// required, must be set.
func change(needID bool, id string, action func() (ca.AuthorityInfo, error)) (*localauthorityv1.AuthorityState, error) {
	if needID {
		if err := requireID(id); err != nil {
			return nil, err
		}
	}
	info, err := action()
	if err != nil {
		return nil, caStatus(err)
	}
	return stateProto(&info), nil
}

func (s *localAuthorityService) prepare(ctx context.Context, kind datastore.AuthorityKind) (*localauthorityv1.AuthorityState, error) {
	return change(false, "", func() (ca.AuthorityInfo, error) { return s.ca.Prepare(ctx, kind) })
}

// activate activates the prepared authority. An early activation's
// warning goes back in the adminwire.WarningHeader, as well as to the log.
// An authority that partners with receipts lack is activated only with the
// adminwire.ForceHeader.
func (s *localAuthorityService) activate(ctx context.Context, kind datastore.AuthorityKind, id string) (*localauthorityv1.AuthorityState, error) {
	return change(true, id, func() (ca.AuthorityInfo, error) {
		if !forced(ctx) {
			if err := s.partnersHave(ctx, kind, id); err != nil {
				return ca.AuthorityInfo{}, err
			}
		}
		info, warning, err := s.ca.Activate(ctx, kind, id)
		if err == nil && warning != "" {
			_ = grpc.SetHeader(ctx, metadata.Pairs(adminwire.WarningHeader, warning)) // only fails outside a call
		}
		return info, err
	})
}

// forced reports whether the call carries the adminwire.ForceHeader.
func forced(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return slices.Contains(md.Get(adminwire.ForceHeader), "true")
}

// partnersHave refuses to activate the prepared authority id of kind while
// partners with receipts have not fetched a bundle holding it.
func (s *localAuthorityService) partnersHave(ctx context.Context, kind datastore.AuthorityKind, id string) error {
	cov, ok, err := s.ca.NextAuthorityCoverage(ctx, kind)
	if err != nil {
		return fmt.Errorf("read which partners fetched the bundle: %w", err)
	}
	if !ok || cov.AuthorityID != id || len(cov.Lack) == 0 {
		return nil
	}
	now := time.Now()
	lack := make([]string, len(cov.Lack))
	for i, r := range cov.Lack {
		lack[i] = fmt.Sprintf("%s (last fetched sequence %d, %s ago)", r.TrustDomain.Name(), r.Sequence, ago(now, r.FetchedAt))
	}
	return fmt.Errorf("%d of %d partners have not fetched a bundle holding authority %s (sequence %d or later) and would reject SVIDs it signs: %s; "+
		"wait until they fetch it (treaty federation status shows who has it), or activate anyway with "+
		"treaty localauthority %s activate -authorityID %s -force: %w",
		len(cov.Lack), len(cov.Lack)+len(cov.Have), id, cov.Sequence, strings.Join(lack, ", "), kind, id, ca.ErrFailedPrecondition)
}

// ago is how long before now t was, for people: "26h", "4m".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

func (s *localAuthorityService) taint(ctx context.Context, kind datastore.AuthorityKind, id string) (*localauthorityv1.AuthorityState, error) {
	return change(true, id, func() (ca.AuthorityInfo, error) { return s.ca.Taint(ctx, kind, id) })
}

func (s *localAuthorityService) revoke(ctx context.Context, kind datastore.AuthorityKind, id string) (*localauthorityv1.AuthorityState, error) {
	return change(true, id, func() (ca.AuthorityInfo, error) { return s.ca.Revoke(ctx, kind, id) })
}

func (s *localAuthorityService) PrepareX509Authority(ctx context.Context, _ *localauthorityv1.PrepareX509AuthorityRequest) (*localauthorityv1.PrepareX509AuthorityResponse, error) {
	st, err := s.prepare(ctx, datastore.KindX509)
	return &localauthorityv1.PrepareX509AuthorityResponse{PreparedAuthority: st}, err
}

func (s *localAuthorityService) PrepareJWTAuthority(ctx context.Context, _ *localauthorityv1.PrepareJWTAuthorityRequest) (*localauthorityv1.PrepareJWTAuthorityResponse, error) {
	st, err := s.prepare(ctx, datastore.KindJWT)
	return &localauthorityv1.PrepareJWTAuthorityResponse{PreparedAuthority: st}, err
}

func (s *localAuthorityService) ActivateX509Authority(ctx context.Context, req *localauthorityv1.ActivateX509AuthorityRequest) (*localauthorityv1.ActivateX509AuthorityResponse, error) {
	st, err := s.activate(ctx, datastore.KindX509, req.GetAuthorityId())
	return &localauthorityv1.ActivateX509AuthorityResponse{ActivatedAuthority: st}, err
}

func (s *localAuthorityService) ActivateJWTAuthority(ctx context.Context, req *localauthorityv1.ActivateJWTAuthorityRequest) (*localauthorityv1.ActivateJWTAuthorityResponse, error) {
	st, err := s.activate(ctx, datastore.KindJWT, req.GetAuthorityId())
	return &localauthorityv1.ActivateJWTAuthorityResponse{ActivatedAuthority: st}, err
}

func (s *localAuthorityService) TaintX509Authority(ctx context.Context, req *localauthorityv1.TaintX509AuthorityRequest) (*localauthorityv1.TaintX509AuthorityResponse, error) {
	st, err := s.taint(ctx, datastore.KindX509, req.GetAuthorityId())
	return &localauthorityv1.TaintX509AuthorityResponse{TaintedAuthority: st}, err
}

func (s *localAuthorityService) TaintJWTAuthority(ctx context.Context, req *localauthorityv1.TaintJWTAuthorityRequest) (*localauthorityv1.TaintJWTAuthorityResponse, error) {
	st, err := s.taint(ctx, datastore.KindJWT, req.GetAuthorityId())
	return &localauthorityv1.TaintJWTAuthorityResponse{TaintedAuthority: st}, err
}

func (s *localAuthorityService) RevokeX509Authority(ctx context.Context, req *localauthorityv1.RevokeX509AuthorityRequest) (*localauthorityv1.RevokeX509AuthorityResponse, error) {
	st, err := s.revoke(ctx, datastore.KindX509, req.GetAuthorityId())
	return &localauthorityv1.RevokeX509AuthorityResponse{RevokedAuthority: st}, err
}

func (s *localAuthorityService) RevokeJWTAuthority(ctx context.Context, req *localauthorityv1.RevokeJWTAuthorityRequest) (*localauthorityv1.RevokeJWTAuthorityResponse, error) {
	st, err := s.revoke(ctx, datastore.KindJWT, req.GetAuthorityId())
	return &localauthorityv1.RevokeJWTAuthorityResponse{RevokedAuthority: st}, err
}

func (s *localAuthorityService) TaintX509UpstreamAuthority(ctx context.Context, req *localauthorityv1.TaintX509UpstreamAuthorityRequest) (*localauthorityv1.TaintX509UpstreamAuthorityResponse, error) {
	skid, err := s.ca.TaintUpstream(ctx, req.GetSubjectKeyId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.TaintX509UpstreamAuthorityResponse{UpstreamAuthoritySubjectKeyId: skid}, nil
}

func (s *localAuthorityService) RevokeX509UpstreamAuthority(ctx context.Context, req *localauthorityv1.RevokeX509UpstreamAuthorityRequest) (*localauthorityv1.RevokeX509UpstreamAuthorityResponse, error) {
	skid, err := s.ca.RevokeUpstream(ctx, req.GetSubjectKeyId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.RevokeX509UpstreamAuthorityResponse{UpstreamAuthoritySubjectKeyId: skid}, nil
}
