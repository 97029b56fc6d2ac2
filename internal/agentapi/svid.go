package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/entrywire"
)

// X509JWTSigner signs the workload SVIDs agents ask for. The local CA
// (ca.CA) is one; a zero TTL means its configured default.
type X509JWTSigner interface {
	SignX509SVID(p ca.X509SVIDParams) ([]*x509.Certificate, error)
	SignJWTSVID(p ca.JWTSVIDParams) (string, time.Time, error)
}

// svidService serves the SVID API calls an agent makes: X509-SVIDs and
// JWT-SVIDs for the entries it is authorized for (see Index.Authorized).
type svidService struct {
	svidv1.UnimplementedSVIDServer
	index *Index
	// caller authenticates and authorizes the calling agent and returns
	// its node record; its errors are gRPC statuses, returned as they are.
	caller func(ctx context.Context) (datastore.AttestedNode, error)
	signer X509JWTSigner
	// log receives signing failures; nil discards.
	log *slog.Logger
	// now is the clock; nil means time.Now.
	now func() time.Time
	// stats counts the SVIDs issued; nil counts nothing.
	stats *stats
}

// BatchNewX509SVID signs one X509-SVID per parameter, for the entry it
// names and the public key of its CSR. Results match parameters one to one
// by index, and each has a status: spire-agent v1.15.3 reads results by
// index, dereferences every status and panics on an OK result without a
// certificate.
func (s *svidService) BatchNewX509SVID(ctx context.Context, req *svidv1.BatchNewX509SVIDRequest) (*svidv1.BatchNewX509SVIDResponse, error) {
	node, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetParams()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "missing parameters")
	}
	authorized := s.authorizedByID(node)
	resp := &svidv1.BatchNewX509SVIDResponse{Results: make([]*svidv1.BatchNewX509SVIDResponse_Result, 0, len(req.GetParams()))}
	for _, p := range req.GetParams() {
		resp.Results = append(resp.Results, s.newX509SVID(ctx, node, authorized, p))
	}
	return resp, nil
}

// authorizedByID returns the entries node is authorized for, by ID: once
// per batch rather than a lookup per parameter.
func (s *svidService) authorizedByID(node datastore.AttestedNode) map[string]datastore.Entry {
	entries := s.index.Authorized(node.SPIFFEID, node.Selectors)
	byID := make(map[string]datastore.Entry, len(entries))
	for _, e := range entries {
		byID[e.ID] = e
	}
	return byID
}

// newX509SVID checks one parameter and signs its SVID. The CSR's subject
// and SANs are ignored: the SVID carries the entry's SPIFFE ID and DNS
// names, as spire-server's do.
func (s *svidService) newX509SVID(ctx context.Context, node datastore.AttestedNode, authorized map[string]datastore.Entry, p *svidv1.NewX509SVIDParams) *svidv1.BatchNewX509SVIDResponse_Result {
	if p.GetEntryId() == "" {
		return x509Failure(codes.InvalidArgument, "missing entry ID")
	}
	if len(p.GetCsr()) == 0 {
		return x509Failure(codes.InvalidArgument, "missing CSR")
	}
	e, ok := authorized[p.GetEntryId()]
	if !ok {
		return x509Failure(codes.NotFound, "entry not found or not authorized")
	}
	csr, err := x509.ParseCertificateRequest(p.GetCsr())
	if err != nil {
		return x509Failure(codes.InvalidArgument, "malformed CSR: "+err.Error())
	}
	if err := csr.CheckSignature(); err != nil {
		return x509Failure(codes.InvalidArgument, "invalid CSR signature: "+err.Error())
	}
	chain, err := s.signer.SignX509SVID(ca.X509SVIDParams{ID: e.SPIFFEID, PublicKey: csr.PublicKey, TTL: e.X509SVIDTTL, DNSNames: e.DNSNames})
	if err != nil {
		return x509Failure(s.signFailure(ctx, node, e, err))
	}
	s.stats.issuedX509()
	svid := &types.X509SVID{Id: entrywire.IDToProto(e.SPIFFEID), ExpiresAt: chain[0].NotAfter.Unix()}
	for _, c := range chain {
		svid.CertChain = append(svid.CertChain, c.Raw)
	}
	return &svidv1.BatchNewX509SVIDResponse_Result{Status: &types.Status{Code: int32(codes.OK), Message: "OK"}, Svid: svid}
}

func x509Failure(code codes.Code, msg string) *svidv1.BatchNewX509SVIDResponse_Result {
	return &svidv1.BatchNewX509SVIDResponse_Result{Status: &types.Status{Code: int32(code), Message: msg}} //nolint:gosec // gRPC codes are small
}

// NewJWTSVID signs a JWT-SVID for the entry the request names, with its
// SPIFFE ID and JWT-SVID TTL, for the requested audiences.
func (s *svidService) NewJWTSVID(ctx context.Context, req *svidv1.NewJWTSVIDRequest) (*svidv1.NewJWTSVIDResponse, error) {
	node, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	e, ok := s.index.Lookup(node.SPIFFEID, node.Selectors, req.GetEntryId())
	if !ok {
		return nil, status.Error(codes.NotFound, "entry not found or not authorized")
	}
	if len(req.GetAudience()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "at least one audience is required")
	}
	issued := s.clock().Truncate(time.Second)
	token, expiry, err := s.signer.SignJWTSVID(ca.JWTSVIDParams{ID: e.SPIFFEID, Audience: req.GetAudience(), TTL: e.JWTSVIDTTL})
	if err != nil {
		return nil, status.Error(s.signFailure(ctx, node, e, err))
	}
	s.stats.issuedJWT()
	return &svidv1.NewJWTSVIDResponse{Svid: &types.JWTSVID{
		Token: token, Id: entrywire.IDToProto(e.SPIFFEID), ExpiresAt: expiry.Unix(), IssuedAt: min(issued.Unix(), expiry.Unix()),
	}}, nil
}

// signFailure logs a failure of the CA and returns what the agent is
// told: FailedPrecondition when the CA has no active authority (the
// operator's to fix; the agent retries), Internal otherwise.
func (s *svidService) signFailure(ctx context.Context, node datastore.AttestedNode, e datastore.Entry, err error) (codes.Code, string) {
	s.logger().ErrorContext(ctx, "sign SVID for agent", attrAgentID, node.SPIFFEID.String(), attrEntryID, e.ID, attrError, err)
	if errors.Is(err, ca.ErrFailedPrecondition) {
		return codes.FailedPrecondition, "the server cannot sign SVIDs now: no active authority"
	}
	return codes.Internal, "failed to sign SVID"
}

func (s *svidService) logger() *slog.Logger {
	if s.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.log
}

func (s *svidService) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}
