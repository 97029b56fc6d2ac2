package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/treatyhq/treaty/internal/agentapi"
	"github.com/treatyhq/treaty/internal/nodeattest"
)

// listenAgents prepares the agent API, if agent_api.address is set: its
// node attestors, its server SVID and its port, so that a problem with any
// of them stops start-up.
func (s *Server) listenAgents(ctx context.Context) error {
	a := s.cfg.AgentAPI
	if a.Address == "" {
		return nil
	}
	attestors, err := s.nodeAttestors()
	if err != nil {
		return err
	}
	agents, err := agentapi.New(agentapi.Config{
		Address:        a.Address,
		TrustDomain:    s.cfg.TrustDomain,
		SVIDSource:     s.ca,
		Bundle:         s.ca,
		Signer:         s.ca,
		SVIDSigner:     s.ca,
		Store:          s.store,
		Entries:        s.store,
		BundlesChanged: s.refresher.Changed,
		Attestors:      attestors,
		AgentSVIDTTL:   a.AgentSVIDTTL,
		Logger:         s.log.With(attrComponent, "agentapi"),
	})
	if err != nil {
		return err
	}
	l, err := agents.Listen(ctx)
	if err != nil {
		return err
	}
	s.agents, s.agentsListener = agents, l
	return nil
}

// nodeAttestors returns join_token, always, and x509pop when
// agent_api.x509pop.ca_bundle_path names the node CAs.
func (s *Server) nodeAttestors() ([]nodeattest.Attestor, error) {
	jt, err := nodeattest.NewJoinToken(nodeattest.JoinTokenConfig{TrustDomain: s.cfg.TrustDomain, Tokens: agentapi.JoinTokens{Store: s.store}})
	if err != nil {
		return nil, err
	}
	attestors := []nodeattest.Attestor{jt}
	pop := s.cfg.AgentAPI.X509POP
	if pop.CABundlePath == "" {
		return attestors, nil
	}
	cas, err := nodeCAs(pop.CABundlePath)
	if err != nil {
		return nil, err
	}
	x, err := nodeattest.NewX509POP(nodeattest.X509POPConfig{TrustDomain: s.cfg.TrustDomain, CAs: cas, AgentPathTemplate: pop.AgentPathTemplate})
	if err != nil {
		return nil, fmt.Errorf("agent_api.x509pop: %w", err)
	}
	return append(attestors, x), nil
}

// nodeCAs reads the PEM CA certificates that sign node certificates.
func nodeCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent_api.x509pop.ca_bundle_path: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("agent_api.x509pop.ca_bundle_path %s: no PEM certificate found", path)
	}
	return pool, nil
}

// entriesChanged is the admin API's Changed hook: entries or bundles may
// have changed, so the Workload API and the agent API read them again.
func (s *Server) entriesChanged(ctx context.Context) {
	if s.workload != nil {
		s.workload.Refresh(ctx)
	}
	if s.agents != nil {
		s.agents.EntriesChanged(ctx)
	}
}
