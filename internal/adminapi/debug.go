package adminapi

import (
	"context"
	"crypto/x509"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	debugv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/debug/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// debugCacheExpiry is how long GetInfo answers from its last counts, as
// SPIRE's Debug API does, so that polling it costs the store little.
const debugCacheExpiry = 5 * time.Second

// debugService implements SPIRE's Debug API: uptime and how many agents,
// entries and bundles the server holds.
type debugService struct {
	debugv1.UnimplementedDebugServer
	started time.Time
	now     func() time.Time
	bundles BundleStore
	entries EntryStore // nil: no Entry API, no entries
	agents  AgentStore // nil: no agent API, no agents
	local   LocalBundle
	// svid, when set, returns the server's own X509-SVID chain.
	svid func() []*x509.Certificate

	mu     sync.Mutex
	cached *debugv1.GetInfoResponse
	at     time.Time
}

func (s *debugService) GetInfo(ctx context.Context, _ *debugv1.GetInfoRequest) (*debugv1.GetInfoResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cached != nil && now.Sub(s.at) < debugCacheExpiry {
		return s.cached, nil
	}
	resp, err := s.count(ctx)
	if err != nil {
		return nil, err
	}
	resp.Uptime = clamp32(int(now.Sub(s.started) / time.Second))
	resp.SvidChain = s.svidChain()
	s.cached, s.at = resp, now
	return resp, nil
}

// count asks the store how many agents, entries and bundles it holds.
func (s *debugService) count(ctx context.Context) (*debugv1.GetInfoResponse, error) {
	resp := &debugv1.GetInfoResponse{}
	bundles, err := s.bundles.CountBundles(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "count bundles: %v", err)
	}
	resp.FederatedBundlesCount = clamp32(bundles)
	if s.entries != nil {
		entries, err := s.entries.ListEntries(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "count entries: %v", err)
		}
		resp.EntriesCount = clamp32(len(entries))
	}
	if s.agents != nil {
		nodes, err := s.agents.ListAttestedNodes(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "count agents: %v", err)
		}
		resp.AgentsCount = clamp32(len(nodes))
	}
	return resp, nil
}

// svidChain is the server's own SVID verified against our bundle, leaf to
// root, as SPIRE shows it; a chain that does not verify (in the moment of
// a rotation) is shown as served.
func (s *debugService) svidChain() []*debugv1.GetInfoResponse_Cert {
	if s.svid == nil {
		return nil
	}
	chain := s.svid()
	if len(chain) == 0 {
		return nil
	}
	bundle := x509bundle.FromX509Authorities(s.local.TrustDomain(), s.local.Bundle().X509Authorities())
	if _, verified, err := x509svid.Verify(chain, bundle); err == nil {
		chain = verified[0]
	}
	var out []*debugv1.GetInfoResponse_Cert
	for _, c := range chain {
		cert := &debugv1.GetInfoResponse_Cert{ExpiresAt: c.NotAfter.Unix(), Subject: c.Subject.String()}
		if id, err := x509svid.IDFromCert(c); err == nil {
			cert.Id = &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
		}
		out = append(out, cert)
	}
	return out
}

func clamp32(n int) int32 { return int32(min(n, 1<<31-1)) } //nolint:gosec // clamped
