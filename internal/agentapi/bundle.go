package agentapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
)

// bundleService is the agent's side of SPIRE's Bundle service: the local
// bundle and federated ones. The admin methods are refused by
// agentMethodsOnly.
type bundleService struct {
	bundlev1.UnimplementedBundleServer
	s       *Server
	answers answerCache
}

// GetBundle returns the local bundle to anyone: an agent fetches it right
// after attesting, before it has an SVID to present.
func (b *bundleService) GetBundle(context.Context, *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	return bundleProto(b.s.cfg.Bundle.Bundle()), nil
}

// GetFederatedBundle returns the bundle held for a partner trust domain to
// an authorised agent. As spire-server, it does not check that one of the
// agent's entries federates with it.
func (b *bundleService) GetFederatedBundle(ctx context.Context, req *bundlev1.GetFederatedBundleRequest) (*types.Bundle, error) {
	if _, err := b.s.agentCaller(ctx); err != nil {
		return nil, err
	}
	td, err := spiffeid.TrustDomainFromString(req.GetTrustDomain())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "malformed trust domain %q: %v", req.GetTrustDomain(), err)
	}
	if td == b.s.cfg.TrustDomain {
		return nil, status.Error(codes.InvalidArgument, "getting a federated bundle for the server's own trust domain is not allowed")
	}
	rec, err := b.s.cfg.Store.FederatedBundle(ctx, td)
	if errors.Is(err, datastore.ErrNotFound) {
		b.answers.forget(td)
		return nil, status.Error(codes.NotFound, "bundle not found")
	}
	if err != nil {
		return nil, b.s.internalError(ctx, "could not read the federated bundle", err)
	}
	if answer, ok := b.answers.get(rec); ok {
		return answer, nil
	}
	res, err := bundle.Parse(rec.TrustDomain, rec.Document, bundle.Options{})
	if err != nil {
		return nil, b.s.internalError(ctx, "could not decode the stored federated bundle", err)
	}
	res.Bundle.SetSequenceNumber(rec.Sequence)
	answer := bundleProto(res.Bundle)
	b.answers.put(rec, answer)
	return answer, nil
}

// answerCache holds the last GetFederatedBundle answer for each trust
// domain with the stored record it was made from. Every agent asks for the
// bundles of its entries' trust domains at every sync, and decoding the
// same JSON and certificates again made most of the call's garbage (with
// 1,000 agents, a quarter of all the server allocated). The store is still
// read on every call, so an answer is only reused while the record is
// unchanged, byte for byte. Answers are shared
// between calls and never modified. The zero value is empty and ready; an
// answerCache is safe for concurrent use.
type answerCache struct {
	mu      sync.RWMutex
	answers map[spiffeid.TrustDomain]cachedAnswer
}

type cachedAnswer struct {
	sequence uint64
	document []byte
	bundle   *types.Bundle
}

// get returns the answer made from rec, if the cache holds it.
func (c *answerCache) get(rec datastore.Bundle) (*types.Bundle, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.answers[rec.TrustDomain]
	if !ok || a.sequence != rec.Sequence || !bytes.Equal(a.document, rec.Document) {
		return nil, false
	}
	return a.bundle, true
}

// put keeps answer, made from rec, in place of the trust domain's last.
func (c *answerCache) put(rec datastore.Bundle, answer *types.Bundle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = make(map[spiffeid.TrustDomain]cachedAnswer)
	}
	c.answers[rec.TrustDomain] = cachedAnswer{sequence: rec.Sequence, document: bytes.Clone(rec.Document), bundle: answer}
}

// forget drops the answer for a trust domain whose bundle is gone, so the
// cache holds no more than the bundles the store holds and agents ask for.
func (c *answerCache) forget(td spiffeid.TrustDomain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.answers, td)
}

// bundleProto is b on the wire: X.509 authorities as DER, every JWT
// authority with its key ID (the agent drops a bundle with a JWT authority
// that has none), the refresh hint in seconds and the sequence number.
func bundleProto(b *spiffebundle.Bundle) *types.Bundle {
	out := &types.Bundle{TrustDomain: b.TrustDomain().Name()}
	for _, cert := range b.X509Authorities() {
		out.X509Authorities = append(out.X509Authorities, &types.X509Certificate{Asn1: cert.Raw})
	}
	keys := b.JWTAuthorities()
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		der, err := x509.MarshalPKIXPublicKey(keys[kid])
		if err != nil || kid == "" {
			continue // a key go-spiffe accepted always encodes
		}
		out.JwtAuthorities = append(out.JwtAuthorities, &types.JWTKey{PublicKey: der, KeyId: kid})
	}
	if hint, ok := b.RefreshHint(); ok {
		out.RefreshHint = int64(hint / time.Second)
	}
	if seq, ok := b.SequenceNumber(); ok {
		out.SequenceNumber = seq
	}
	return out
}
