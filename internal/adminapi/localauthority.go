package adminapi

import (
	"context"

	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
)

// localAuthorityService implements SPIRE's LocalAuthority API for X.509
// authorities and JWT keys. WIT authorities and upstream tainting are not
// supported and answer Unimplemented.
type localAuthorityService struct {
	localauthorityv1.UnimplementedLocalAuthorityServer
	ca *ca.CA
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

func (s *localAuthorityService) PrepareX509Authority(ctx context.Context, _ *localauthorityv1.PrepareX509AuthorityRequest) (*localauthorityv1.PrepareX509AuthorityResponse, error) {
	info, err := s.ca.Prepare(ctx, datastore.KindX509)
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.PrepareX509AuthorityResponse{PreparedAuthority: stateProto(&info)}, nil
}

func (s *localAuthorityService) PrepareJWTAuthority(ctx context.Context, _ *localauthorityv1.PrepareJWTAuthorityRequest) (*localauthorityv1.PrepareJWTAuthorityResponse, error) {
	info, err := s.ca.Prepare(ctx, datastore.KindJWT)
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.PrepareJWTAuthorityResponse{PreparedAuthority: stateProto(&info)}, nil
}

func (s *localAuthorityService) ActivateX509Authority(ctx context.Context, req *localauthorityv1.ActivateX509AuthorityRequest) (*localauthorityv1.ActivateX509AuthorityResponse, error) {
	if err := requireID(req.GetAuthorityId()); err != nil {
		return nil, err
	}
	info, _, err := s.ca.Activate(ctx, datastore.KindX509, req.GetAuthorityId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.ActivateX509AuthorityResponse{ActivatedAuthority: stateProto(&info)}, nil
}

func (s *localAuthorityService) ActivateJWTAuthority(ctx context.Context, req *localauthorityv1.ActivateJWTAuthorityRequest) (*localauthorityv1.ActivateJWTAuthorityResponse, error) {
	if err := requireID(req.GetAuthorityId()); err != nil {
		return nil, err
	}
	info, _, err := s.ca.Activate(ctx, datastore.KindJWT, req.GetAuthorityId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.ActivateJWTAuthorityResponse{ActivatedAuthority: stateProto(&info)}, nil
}

func (s *localAuthorityService) TaintX509Authority(ctx context.Context, req *localauthorityv1.TaintX509AuthorityRequest) (*localauthorityv1.TaintX509AuthorityResponse, error) {
	if err := requireID(req.GetAuthorityId()); err != nil {
		return nil, err
	}
	info, err := s.ca.Taint(ctx, datastore.KindX509, req.GetAuthorityId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.TaintX509AuthorityResponse{TaintedAuthority: stateProto(&info)}, nil
}

func (s *localAuthorityService) TaintJWTAuthority(ctx context.Context, req *localauthorityv1.TaintJWTAuthorityRequest) (*localauthorityv1.TaintJWTAuthorityResponse, error) {
	if err := requireID(req.GetAuthorityId()); err != nil {
		return nil, err
	}
	info, err := s.ca.Taint(ctx, datastore.KindJWT, req.GetAuthorityId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.TaintJWTAuthorityResponse{TaintedAuthority: stateProto(&info)}, nil
}

func (s *localAuthorityService) RevokeX509Authority(ctx context.Context, req *localauthorityv1.RevokeX509AuthorityRequest) (*localauthorityv1.RevokeX509AuthorityResponse, error) {
	if err := requireID(req.GetAuthorityId()); err != nil {
		return nil, err
	}
	info, err := s.ca.Revoke(ctx, datastore.KindX509, req.GetAuthorityId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.RevokeX509AuthorityResponse{RevokedAuthority: stateProto(&info)}, nil
}

func (s *localAuthorityService) RevokeJWTAuthority(ctx context.Context, req *localauthorityv1.RevokeJWTAuthorityRequest) (*localauthorityv1.RevokeJWTAuthorityResponse, error) {
	if err := requireID(req.GetAuthorityId()); err != nil {
		return nil, err
	}
	info, err := s.ca.Revoke(ctx, datastore.KindJWT, req.GetAuthorityId())
	if err != nil {
		return nil, caStatus(err)
	}
	return &localauthorityv1.RevokeJWTAuthorityResponse{RevokedAuthority: stateProto(&info)}, nil
}
