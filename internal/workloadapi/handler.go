package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/socket"
)

// securityHeader is the metadata every Workload API call must carry
// (SPIFFE Workload API standard, section 6.2), so that a browser or a
// confused proxy cannot be tricked into calling it.
const securityHeader = "workload.spiffe.io"

// handler implements the SpiffeWorkloadAPI service.
type handler struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	s *Server
}

// caller is an attested workload.
type caller struct {
	selectors []datastore.Selector
	pid, uid  int
}

func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(securityHeader); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request: set gRPC metadata workload.spiffe.io: true")
	}
	return nil
}

// attest checks the security header and attests the calling process.
func (h *handler) attest(ctx context.Context, method string) (*caller, error) {
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	info, ok := socket.Peer(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no peer credentials on this connection")
	}
	selectors, err := h.s.attestor.attest(info)
	if err != nil {
		h.s.log.Warn("workload attestation failed", attrMethod, method, attrPID, info.PID, attrUID, info.UID, attrError, err)
		if errors.Is(err, errExited) {
			return nil, status.Error(codes.PermissionDenied, err.Error())
		}
		return nil, status.Errorf(codes.Internal, "attestation failed: %v", err)
	}
	return &caller{selectors: selectors, pid: info.PID, uid: info.UID}, nil
}

// entries returns the entries of snap that c matches: every selector of
// the entry must be among the caller's (SPIRE's matching rule).
func (c *caller) entries(snap *snapshot, now time.Time) []datastore.Entry {
	have := map[datastore.Selector]bool{}
	for _, s := range c.selectors {
		have[s] = true
	}
	var out []datastore.Entry
	for _, e := range snap.entries {
		if len(e.Selectors) == 0 || (!e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)) {
			continue
		}
		if !slices.ContainsFunc(e.Selectors, func(s datastore.Selector) bool { return !have[s] }) {
			out = append(out, e)
		}
	}
	return out
}

func (h *handler) matched(c *caller, snap *snapshot) ([]datastore.Entry, error) {
	entries := c.entries(snap, h.s.cfg.Now())
	if len(entries) == 0 {
		h.s.log.Info("workload has no registration entry", attrPID, c.pid, attrUID, c.uid, "selectors", selectorStrings(c.selectors))
		return nil, status.Errorf(codes.PermissionDenied,
			"no identity issued: no registration entry matches this workload (its selectors: %s); create one with treaty entry create -selector ...",
			joinSelectors(c.selectors))
	}
	return entries, nil
}

// federatedFor returns the federated bundles the entries federate with
// ("*" means all). Trust domains without a bundle are skipped: federation
// never blocks identity.
func federatedFor(snap *snapshot, entries []datastore.Entry, local spiffeid.TrustDomain) map[spiffeid.TrustDomain]*spiffebundle.Bundle {
	out := map[spiffeid.TrustDomain]*spiffebundle.Bundle{}
	for _, e := range entries {
		for _, name := range e.FederatesWith {
			if name == datastore.FederateWithAll {
				maps.Copy(out, snap.federated)
				continue
			}
			td, err := spiffeid.TrustDomainFromString(name)
			if err != nil || td == local {
				continue
			}
			if b := snap.federated[td]; b != nil {
				out[td] = b
			}
		}
	}
	return out
}

// stream sends build's response now and after every snapshot change that
// alters it, until the client goes away.
func stream[T proto.Message](ctx context.Context, h *handler, c *caller, build func(*snapshot, []datastore.Entry) (T, error), send func(T) error) error {
	h.s.streams.Add(1)
	defer h.s.streams.Add(-1)
	var last T
	sent := false
	for {
		snap := h.s.state.snapshot()
		entries, err := h.matched(c, snap)
		if err != nil {
			return err
		}
		resp, err := build(snap, entries)
		if err != nil {
			return err
		}
		if !sent || !proto.Equal(resp, last) {
			if err := send(resp); err != nil {
				return err
			}
			last, sent = resp, true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-snap.changed:
		}
	}
}

func (h *handler) FetchX509SVID(_ *workload.X509SVIDRequest, srv grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	c, err := h.attest(srv.Context(), "FetchX509SVID")
	if err != nil {
		return err
	}
	return stream(srv.Context(), h, c, h.x509SVIDResponse, srv.Send)
}

func (h *handler) x509SVIDResponse(snap *snapshot, entries []datastore.Entry) (*workload.X509SVIDResponse, error) {
	localDER := certsDER(snap.local)
	resp := &workload.X509SVIDResponse{FederatedBundles: map[string][]byte{}}
	for _, e := range entries {
		svid, err := h.s.cache.x509For(e, snap.caGeneration)
		if err != nil {
			h.s.log.Error("cannot issue X509-SVID", attrEntryID, e.ID, attrError, err)
			return nil, status.Errorf(codes.Unavailable, "cannot issue an X509-SVID for %s: %v", e.SPIFFEID, err)
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId: e.SPIFFEID.String(), X509Svid: svid.chainDER, X509SvidKey: svid.keyDER,
			Bundle: localDER, Hint: e.Hint,
		})
	}
	for td, b := range federatedFor(snap, entries, h.s.cfg.TrustDomain) {
		resp.FederatedBundles[td.IDString()] = certsDER(b)
	}
	return resp, nil
}

func (h *handler) FetchX509Bundles(_ *workload.X509BundlesRequest, srv grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	c, err := h.attest(srv.Context(), "FetchX509Bundles")
	if err != nil {
		return err
	}
	return stream(srv.Context(), h, c, func(snap *snapshot, entries []datastore.Entry) (*workload.X509BundlesResponse, error) {
		resp := &workload.X509BundlesResponse{Bundles: map[string][]byte{h.s.cfg.TrustDomain.IDString(): certsDER(snap.local)}}
		for td, b := range federatedFor(snap, entries, h.s.cfg.TrustDomain) {
			resp.Bundles[td.IDString()] = certsDER(b)
		}
		return resp, nil
	}, srv.Send)
}

func (h *handler) FetchJWTBundles(_ *workload.JWTBundlesRequest, srv grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	c, err := h.attest(srv.Context(), "FetchJWTBundles")
	if err != nil {
		return err
	}
	return stream(srv.Context(), h, c, func(snap *snapshot, entries []datastore.Entry) (*workload.JWTBundlesResponse, error) {
		all := federatedFor(snap, entries, h.s.cfg.TrustDomain)
		all[h.s.cfg.TrustDomain] = snap.local
		resp := &workload.JWTBundlesResponse{Bundles: map[string][]byte{}}
		for td, b := range all {
			jwks, err := jwtbundle.FromJWTAuthorities(td, b.JWTAuthorities()).Marshal()
			if err != nil {
				return nil, status.Errorf(codes.Internal, "encode JWT bundle of %s: %v", td, err)
			}
			resp.Bundles[td.IDString()] = jwks
		}
		return resp, nil
	}, srv.Send)
}

func (h *handler) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if len(req.GetAudience()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	var want spiffeid.ID
	if req.GetSpiffeId() != "" {
		id, err := spiffeid.FromString(req.GetSpiffeId())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID %q: %v", req.GetSpiffeId(), err)
		}
		want = id
	}
	c, err := h.attest(ctx, "FetchJWTSVID")
	if err != nil {
		return nil, err
	}
	snap := h.s.state.snapshot()
	entries, err := h.matched(c, snap)
	if err != nil {
		return nil, err
	}
	resp := &workload.JWTSVIDResponse{}
	for _, e := range entries {
		if !want.IsZero() && e.SPIFFEID != want {
			continue
		}
		svid, err := h.s.cache.jwtFor(e, snap.caGeneration, req.GetAudience())
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "cannot issue a JWT-SVID for %s: %v", e.SPIFFEID, err)
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: e.SPIFFEID.String(), Svid: svid.token, Hint: e.Hint})
	}
	if len(resp.Svids) == 0 {
		return nil, status.Errorf(codes.PermissionDenied, "this workload is not entitled to %s", want)
	}
	return resp, nil
}

func (h *handler) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	if req.GetAudience() == "" {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.GetSvid() == "" {
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	snap := h.s.state.snapshot()
	set := jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(h.s.cfg.TrustDomain, snap.local.JWTAuthorities()))
	for td, b := range snap.federated {
		set.Add(jwtbundle.FromJWTAuthorities(td, b.JWTAuthorities()))
	}
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), set, []string{req.GetAudience()})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

// certsDER concatenates the bundle's X.509 authorities (ASN.1 DER), the
// encoding the Workload API uses for bundles.
func certsDER(b *spiffebundle.Bundle) []byte {
	var out []byte
	for _, c := range b.X509Authorities() {
		out = append(out, c.Raw...)
	}
	return out
}

func selectorStrings(sel []datastore.Selector) []string {
	out := make([]string, len(sel))
	for i, s := range sel {
		out[i] = s.Type + ":" + s.Value
	}
	return out
}

func joinSelectors(sel []datastore.Selector) string {
	return fmt.Sprint(selectorStrings(sel))
}
