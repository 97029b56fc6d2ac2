package adminapi

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/invite"
)

// InviteStore records a joined invite with its relationship and bundle.
type InviteStore interface {
	JoinInvite(ctx context.Context, r datastore.Relationship, b datastore.Bundle, nonce string) error
}

// Invites configures the invite service.
type Invites struct {
	// EndpointURL is our advertised bundle endpoint, used when an invite
	// names none; empty when we have no bundle endpoint.
	EndpointURL      string
	Profile          string
	EndpointSPIFFEID string
	Fetcher          invite.Fetcher
	Store            InviteStore
}

type inviteService struct {
	cfg       Invites
	ca        LocalBundle
	refresher Refresher
}

// invite makes a token for our trust domain (adminwire.InviteMethod).
func (s *inviteService) invite(_ context.Context, raw *structpb.Struct) (*structpb.Struct, error) {
	var req adminwire.InviteRequest
	if err := adminwire.FromStruct(raw, &req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	t, err := s.token(req.URL, time.Duration(req.TTLSeconds)*time.Second, req.EmbedBundle, req.Reverse)
	if err != nil {
		return nil, err
	}
	enc, err := invite.Encode(t)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return wireStruct(adminwire.InviteResponse{Token: enc, Expires: time.Unix(t.Expires, 0).UTC().Format(time.RFC3339),
		TrustDomain: t.TrustDomain, URL: t.URLs[0], Profile: t.Profile, Fingerprint: t.Fingerprint})
}

func (s *inviteService) token(url string, ttl time.Duration, embed, reverse bool) (invite.Token, error) {
	if url == "" {
		url = s.cfg.EndpointURL
	}
	if url == "" {
		return invite.Token{}, status.Error(codes.FailedPrecondition,
			"this server has no bundle endpoint to invite partners to: set bundle_endpoint.address, or give the URL partners reach it at (-url)")
	}
	if err := checkInviteURL(url); err != nil {
		return invite.Token{}, err
	}
	if ttl <= 0 {
		ttl = adminwire.DefaultInviteTTL
	}
	b := s.ca.Bundle()
	fp, err := bundle.Fingerprint(b)
	if err != nil {
		return invite.Token{}, status.Error(codes.Internal, err.Error())
	}
	nonce, err := invite.NewNonce()
	if err != nil {
		return invite.Token{}, status.Error(codes.Internal, err.Error())
	}
	t := invite.Token{TrustDomain: s.ca.TrustDomain().Name(), URLs: []string{url}, Profile: s.cfg.Profile,
		EndpointSPIFFEID: s.cfg.EndpointSPIFFEID, Fingerprint: fp, Expires: time.Now().Add(ttl).Unix(), Nonce: nonce, Reverse: reverse}
	if embed {
		if t.Bundle, err = bundle.Marshal(b); err != nil {
			return t, status.Error(codes.Internal, err.Error())
		}
	}
	return t, nil
}

// join accepts a token (adminwire.JoinMethod).
func (s *inviteService) join(ctx context.Context, raw *structpb.Struct) (*structpb.Struct, error) {
	var req adminwire.JoinRequest
	if err := adminwire.FromStruct(raw, &req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	t, err := invite.Decode(req.Token, time.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if t.TrustDomain == s.ca.TrustDomain().Name() {
		return nil, status.Error(codes.InvalidArgument, "this invite is for our own trust domain: give it to the partner, who joins it on their server")
	}
	v, err := invite.Verify(ctx, t, s.cfg.Fetcher)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	boot, err := encodeBootstrap(v.Bundle, time.Now())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := joinStatus(s.cfg.Store.JoinInvite(ctx, v.Relationship.Record(time.Now()), *boot, t.Nonce), t.TrustDomain); err != nil {
		return nil, err
	}
	if s.refresher != nil {
		_ = s.refresher.Reload(ctx) // the relationship is stored; a reload failure is logged and retried by the refresher
	}
	seq, _ := v.Bundle.SequenceNumber()
	out := adminwire.JoinResponse{TrustDomain: t.TrustDomain, Profile: t.Profile, URL: t.URLs[0], Fingerprint: t.Fingerprint, Sequence: seq}
	if t.Reverse || req.Reverse {
		rt, err := s.token(req.URL, adminwire.DefaultInviteTTL, false, false)
		if err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "joined %s, but cannot make the reverse invite: %v", t.TrustDomain, status.Convert(err).Message())
		}
		if out.ReverseToken, err = invite.Encode(rt); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return wireStruct(out)
}

// inviteServiceDesc describes the invite service to grpc.Server.
var inviteServiceDesc = grpc.ServiceDesc{
	ServiceName: "treaty.admin.v1.Invites",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		structMethod("Invite", adminwire.InviteMethod, func(s any) structHandler { return s.(*inviteService).invite }),
		structMethod("Join", adminwire.JoinMethod, func(s any) structHandler { return s.(*inviteService).join }),
	},
}

type structHandler func(context.Context, *structpb.Struct) (*structpb.Struct, error)

// structMethod builds a unary method taking and returning a Struct.
func structMethod(name, full string, pick func(srv any) structHandler) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(structpb.Struct)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := pick(srv)
			if interceptor == nil {
				return h(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: full}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return h(ctx, req.(*structpb.Struct))
			})
		},
	}
}

// wireStruct encodes msg, an adminwire message, for the answer to a call.
func wireStruct(msg any) (*structpb.Struct, error) {
	out, err := adminwire.ToStruct(msg)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return out, nil
}

// checkInviteURL refuses an endpoint URL that a partner's join would
// refuse, before the invite is handed out.
func checkInviteURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "url %q is not a URL (want https://host:port)", federation.RedactRawURL(raw))
	}
	if err := federation.CheckEndpointURL(u); err != nil {
		return status.Errorf(codes.InvalidArgument, "url %v", err)
	}
	return nil
}

// joinStatus maps the store's answer to a join to a status for the
// partner's operator. The store says when an invite was used and wraps
// datastore.ErrInviteUsed, whose own words would repeat "already used".
func joinStatus(err error, td string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, datastore.ErrInviteUsed):
		msg := strings.TrimSuffix(err.Error(), ": "+datastore.ErrInviteUsed.Error())
		return status.Error(codes.AlreadyExists, msg+"; an invite can be joined once: ask the partner for a new one")
	case errors.Is(err, datastore.ErrAlreadyExists):
		return status.Errorf(codes.AlreadyExists, "a federation relationship with %s exists already; nothing was changed (treaty federation show -trustDomain %s)", td, td)
	}
	return status.Error(codes.Internal, err.Error())
}
