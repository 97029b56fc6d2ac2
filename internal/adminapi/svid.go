package adminapi

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/entrywire"
)

// SVIDSigner signs the SVIDs the SVID API mints, for our trust domain only.
type SVIDSigner interface {
	TrustDomain() spiffeid.TrustDomain
	SignX509SVID(p ca.X509SVIDParams) ([]*x509.Certificate, error)
	SignJWTSVID(p ca.JWTSVIDParams) (string, time.Time, error)
}

// svidService implements the minting calls of SPIRE's SVID API: SVIDs for
// devices and programs that cannot use the Workload API. The agent-facing
// calls are not served; treaty has no agents.
type svidService struct {
	svidv1.UnimplementedSVIDServer
	ca SVIDSigner
}

// MintX509SVID signs the CSR's public key for the single SPIFFE ID in its
// URI SAN, as SPIRE does. The private key never reaches the server.
func (s *svidService) MintX509SVID(_ context.Context, req *svidv1.MintX509SVIDRequest) (*svidv1.MintX509SVIDResponse, error) {
	if len(req.GetCsr()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "missing CSR")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "malformed CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to verify CSR signature: %v", err)
	}
	if len(csr.URIs) != 1 {
		return nil, status.Errorf(codes.InvalidArgument, "the CSR must carry exactly one URI SAN, the SPIFFE ID (it has %d)", len(csr.URIs))
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR URI SAN is invalid: %v", err)
	}
	if err := s.checkID(id); err != nil {
		return nil, err
	}
	if err := checkDNSNames(csr.DNSNames); err != nil {
		return nil, err
	}
	if req.GetTtl() < 0 {
		return nil, status.Error(codes.InvalidArgument, "TTL cannot be negative")
	}
	chain, err := s.ca.SignX509SVID(ca.X509SVIDParams{
		ID: id, PublicKey: csr.PublicKey, DNSNames: csr.DNSNames, TTL: time.Duration(req.GetTtl()) * time.Second,
	})
	if err != nil {
		return nil, caStatus(err)
	}
	out := &types.X509SVID{Id: entrywire.IDToProto(id), ExpiresAt: chain[0].NotAfter.Unix()}
	for _, c := range chain {
		out.CertChain = append(out.CertChain, c.Raw)
	}
	return &svidv1.MintX509SVIDResponse{Svid: out}, nil
}

// MintJWTSVID signs a JWT-SVID for the requested ID and audiences.
func (s *svidService) MintJWTSVID(_ context.Context, req *svidv1.MintJWTSVIDRequest) (*svidv1.MintJWTSVIDResponse, error) {
	id, err := protoToID(req.GetId())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid SPIFFE ID: %v", err)
	}
	if err := s.checkID(id); err != nil {
		return nil, err
	}
	if len(req.GetAudience()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "at least one audience is required")
	}
	if req.GetTtl() < 0 {
		return nil, status.Error(codes.InvalidArgument, "TTL cannot be negative")
	}
	issued := time.Now()
	token, expiry, err := s.ca.SignJWTSVID(ca.JWTSVIDParams{ID: id, Audience: req.GetAudience(), TTL: time.Duration(req.GetTtl()) * time.Second})
	if err != nil {
		return nil, caStatus(err)
	}
	return &svidv1.MintJWTSVIDResponse{Svid: &types.JWTSVID{
		Token: token, Id: entrywire.IDToProto(id), ExpiresAt: expiry.Unix(), IssuedAt: issued.Unix(),
	}}, nil
}

// checkID accepts only workload IDs of the local trust domain.
func (s *svidService) checkID(id spiffeid.ID) error {
	if id.TrustDomain() != s.ca.TrustDomain() {
		return status.Errorf(codes.InvalidArgument, "%s is not in this server's trust domain %s; a server issues SVIDs only for its own trust domain", id, s.ca.TrustDomain().Name())
	}
	if id.Path() == "" {
		return status.Errorf(codes.InvalidArgument, "%s is the trust domain's own ID; give a workload path, e.g. %s/device/1234", id, id)
	}
	return nil
}
