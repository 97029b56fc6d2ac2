package adminapi

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
)

// BundleStore is the persistence the Bundle service needs.
type BundleStore interface {
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error)
	ListFederatedBundles(ctx context.Context, after string, limit int) ([]datastore.Bundle, error)
	CountBundles(ctx context.Context) (int, error)
	CreateFederatedBundle(ctx context.Context, b datastore.Bundle) error
	UpdateFederatedBundle(ctx context.Context, b datastore.Bundle) error
	SetFederatedBundle(ctx context.Context, b datastore.Bundle) error
	DeleteFederatedBundle(ctx context.Context, td spiffeid.TrustDomain) error
}

// LocalBundle is our trust domain's bundle as the local CA keeps it: the
// Bundle API serves it and appends to it, invites carry its fingerprint.
type LocalBundle interface {
	TrustDomain() spiffeid.TrustDomain
	Bundle() *spiffebundle.Bundle
	Authorities(kind datastore.AuthorityKind) []ca.AuthorityInfo
	IsTainted(kind datastore.AuthorityKind, id string) bool
	Append(ctx context.Context, certs []*x509.Certificate, keys []ca.ExternalJWTKey) error
}

// bundleService implements SPIRE's Bundle API.
type bundleService struct {
	bundlev1.UnimplementedBundleServer
	ca    LocalBundle
	store BundleStore
	// entries, when set, are the entries a deleted bundle's mode applies to.
	entries EntryStore
}

func (s *bundleService) CountBundles(ctx context.Context, _ *bundlev1.CountBundlesRequest) (*bundlev1.CountBundlesResponse, error) {
	n, err := s.store.CountBundles(ctx)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &bundlev1.CountBundlesResponse{Count: int32(min(n, 1<<31-1))}, nil //nolint:gosec // clamped
}

func (s *bundleService) GetBundle(_ context.Context, req *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	return s.localBundle(req.GetOutputMask()), nil
}

// localBundle is the published local bundle with SPIRE's extra fields:
// which authorities are tainted and when JWT keys expire.
func (s *bundleService) localBundle(mask *types.BundleMask) *types.Bundle {
	expiry := map[string]time.Time{}
	for _, a := range s.ca.Authorities(datastore.KindJWT) {
		expiry[a.ID] = a.ExpiresAt
	}
	tainted := func(cert *x509.Certificate, kid string) bool {
		if cert != nil {
			return s.ca.IsTainted(datastore.KindX509, hex.EncodeToString(cert.SubjectKeyId))
		}
		return s.ca.IsTainted(datastore.KindJWT, kid)
	}
	return bundlewire.ToProto(s.ca.Bundle(), mask, tainted, expiry)
}

func (s *bundleService) AppendBundle(ctx context.Context, req *bundlev1.AppendBundleRequest) (*types.Bundle, error) {
	if err := s.checkAppendLimit(req); err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for i, c := range req.GetX509Authorities() {
		cert, err := x509.ParseCertificate(c.GetAsn1())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "x509_authorities[%d]: not a valid X.509 certificate: %v", i, err)
		}
		if err := bundle.CheckX509Authority(cert); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "x509_authorities[%d]: %v", i, err)
		}
		if other, ok := bundle.ForeignTrustDomain(s.ca.TrustDomain(), cert); ok {
			return nil, status.Errorf(codes.InvalidArgument, "x509_authorities[%d]: certificate %q names trust domain %q, not ours (%q); only our own trust domain's CAs can join the local bundle", i, cert.Subject, other.Name(), s.ca.TrustDomain().Name())
		}
		certs = append(certs, cert)
	}
	var keys []ca.ExternalJWTKey
	for i, k := range req.GetJwtAuthorities() {
		pub, err := bundlewire.ParseJWTKey(i, k)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		keys = append(keys, ca.ExternalJWTKey{KeyID: k.GetKeyId(), PublicKey: pub, ExpiresAt: unixOrZero(k.GetExpiresAt())})
	}
	if err := s.ca.Append(ctx, certs, keys); err != nil {
		return nil, caStatus(err)
	}
	return s.localBundle(req.GetOutputMask()), nil
}

// checkAppendLimit refuses an append after which the local bundle would
// hold more authorities than a bundle may (bundle.MaxKeys): partners would
// refuse the bundle we publish.
func (s *bundleService) checkAppendLimit(req *bundlev1.AppendBundleRequest) error {
	local := s.ca.Bundle()
	held := len(local.X509Authorities()) + len(local.JWTAuthorities())
	added := len(req.GetX509Authorities()) + len(req.GetJwtAuthorities())
	if held+added > bundle.MaxKeys {
		return status.Errorf(codes.InvalidArgument, "the local bundle holds %d authorities; %d more would make %d, over the limit of %d a bundle may hold (partners would refuse it); nothing was appended",
			held, added, held+added, bundle.MaxKeys)
	}
	return nil
}

func unixOrZero(secs int64) time.Time {
	if secs == 0 {
		return time.Time{}
	}
	return time.Unix(secs, 0)
}

func (s *bundleService) ListFederatedBundles(ctx context.Context, req *bundlev1.ListFederatedBundlesRequest) (*bundlev1.ListFederatedBundlesResponse, error) {
	if req.GetPageSize() < 0 {
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	}
	size := int(req.GetPageSize())
	limit := size
	if size > 0 {
		limit = size + 1 // one extra row tells whether there is a next page
	}
	recs, err := s.store.ListFederatedBundles(ctx, req.GetPageToken(), limit)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &bundlev1.ListFederatedBundlesResponse{}
	if size > 0 && len(recs) > size {
		recs = recs[:size]
		resp.NextPageToken = recs[size-1].TrustDomain.Name()
	}
	for _, rec := range recs {
		b, err := decodeStored(rec)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Bundles = append(resp.Bundles, bundlewire.ToProto(b, req.GetOutputMask(), nil, nil))
	}
	return resp, nil
}

func (s *bundleService) GetFederatedBundle(ctx context.Context, req *bundlev1.GetFederatedBundleRequest) (*types.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(req.GetTrustDomain())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "trust_domain %q: %v", req.GetTrustDomain(), err)
	}
	if td == s.ca.TrustDomain() {
		return nil, status.Errorf(codes.NotFound, "%q is this server's own trust domain, not a federated one; use GetBundle", td.Name())
	}
	rec, err := s.store.FederatedBundle(ctx, td)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no bundle stored for trust domain %q", td.Name())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	b, err := decodeStored(rec)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return bundlewire.ToProto(b, req.GetOutputMask(), nil, nil), nil
}

func decodeStored(rec datastore.Bundle) (*spiffebundle.Bundle, error) {
	res, err := bundle.Parse(rec.TrustDomain, rec.Document, bundle.Options{})
	if err != nil {
		return nil, fmt.Errorf("stored bundle for %q: %w", rec.TrustDomain.Name(), err)
	}
	res.Bundle.SetSequenceNumber(rec.Sequence)
	return res.Bundle, nil
}

// caStatus maps CA errors to gRPC statuses.
func caStatus(err error) error {
	switch {
	case diskFull(err):
		return status.Error(codes.ResourceExhausted, diskFullMessage(err))
	case errors.Is(err, ca.ErrFailedPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ca.ErrUnknownAuthority):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ca.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// diskFull reports whether err comes from a full disk: the key store's
// ENOSPC or SQLite's SQLITE_FULL.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "disk is full") ||
		strings.Contains(err.Error(), "no space left on device")
}

func diskFullMessage(err error) string {
	return "the disk of the data directory is full: free some space and retry; nothing was changed (" + err.Error() + ")"
}
