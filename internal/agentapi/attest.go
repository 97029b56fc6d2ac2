package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/nodeattest"
)

// agentService is the agent's side of SPIRE's Agent service: attestation,
// renewal and status. The admin methods are refused by agentMethodsOnly.
type agentService struct {
	agentv1.UnimplementedAgentServer
	s *Server
}

// attested is what an agent's attestation established.
type attested struct {
	typ    string
	result nodeattest.Result
	chain  []*x509.Certificate
}

// AttestAgent attests an agent and issues its SVID: read the parameters,
// run the attestor (with challenges over the stream), refuse a banned
// agent, sign the CSR's key, record the node, answer with the SVID. Every
// response carries a challenge or the result: the agent panics on one
// with neither. Every call is counted by attestor type and result.
func (a *agentService) AttestAgent(stream agentv1.Agent_AttestAgentServer) error {
	var typ string
	err := a.attestAgent(stream, &typ)
	a.s.stats.attestation(typ, err)
	return err
}

// attestAgent is AttestAgent; it sets *typ to the attestor type the agent
// named once it is known.
func (a *agentService) attestAgent(stream agentv1.Agent_AttestAgentServer, typ *string) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	params, err := checkAttestParams(req.GetParams())
	if err != nil {
		return err
	}
	*typ = params.GetData().GetType()
	csr, err := parseAgentCSR(params.GetParams().GetCsr())
	if err != nil {
		return err
	}
	att, err := a.attest(ctx, stream, params.GetData())
	if err != nil {
		return err
	}
	if err := a.refuseBanned(ctx, att.result.AgentID); err != nil {
		return err
	}
	if att.chain, err = a.s.signAgent(ctx, att.result.AgentID, csr); err != nil {
		return err
	}
	if err := a.s.recordAttestation(ctx, att); err != nil {
		return err
	}
	a.s.stats.seen(att.result.AgentID, a.s.cfg.Now())
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result_{
		Result: &agentv1.AttestAgentResponse_Result{Svid: agentSVIDProto(att.result.AgentID, att.chain), Reattestable: att.result.CanReattest},
	}})
}

// checkAttestParams checks the first request as spire-server does.
func checkAttestParams(p *agentv1.AttestAgentRequest_Params) (*agentv1.AttestAgentRequest_Params, error) {
	var missing string
	switch {
	case p == nil:
		missing = "missing params"
	case p.GetData() == nil:
		missing = "missing attestation data"
	case p.GetParams() == nil:
		missing = "missing X509-SVID params"
	case len(p.GetParams().GetCsr()) == 0:
		missing = "missing CSR"
	case p.GetData().GetType() == "":
		missing = "missing attestation data type"
	case len(p.GetData().GetPayload()) == 0:
		missing = "missing attestation data payload"
	default:
		return p, nil
	}
	return nil, status.Error(codes.InvalidArgument, "malformed param: "+missing)
}

// attest runs the attestor the agent named and checks the ID it gives.
func (a *agentService) attest(ctx context.Context, stream agentv1.Agent_AttestAgentServer, data *types.AttestationData) (attested, error) {
	attestor, ok := a.s.attestors[data.GetType()]
	if !ok {
		return attested{}, status.Errorf(codes.InvalidArgument, "failed to attest: no attestor of type %q; this server accepts: %s",
			data.GetType(), strings.Join(slices.Sorted(maps.Keys(a.s.attestors)), ", "))
	}
	res, err := attestor.Attest(ctx, data.GetPayload(), challenger(stream))
	if err != nil {
		return attested{}, a.s.attestError(ctx, data.GetType(), err)
	}
	if !isAgentID(a.s.cfg.TrustDomain, res.AgentID) {
		return attested{}, a.s.internalError(ctx, "attestor gave an ID outside /spire/agent",
			fmt.Errorf("attestor %s: agent ID %q", data.GetType(), res.AgentID))
	}
	return attested{typ: data.GetType(), result: res}, nil
}

// isAgentID reports whether id names an agent of td: a path below
// /spire/agent.
func isAgentID(td spiffeid.TrustDomain, id spiffeid.ID) bool {
	return id.MemberOf(td) && strings.HasPrefix(id.Path(), "/spire/agent/")
}

// challenger carries the attestor's challenges over the stream: a response
// with the challenge, then the next request's challenge_response.
func challenger(stream agentv1.Agent_AttestAgentServer) nodeattest.ChallengeFunc {
	return func(_ context.Context, challenge []byte) ([]byte, error) {
		if len(challenge) == 0 { // would be a response with neither challenge nor result
			return nil, errors.New("attestor issued an empty challenge")
		}
		err := stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Challenge{Challenge: challenge}})
		if err != nil {
			return nil, fmt.Errorf("send challenge: %w", err)
		}
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, status.Error(codes.InvalidArgument, "malformed param: stream closed before the challenge response")
		}
		if err != nil {
			return nil, fmt.Errorf("receive challenge response: %w", err)
		}
		if len(req.GetChallengeResponse()) == 0 {
			return nil, status.Error(codes.InvalidArgument, "malformed param: missing challenge response")
		}
		return req.GetChallengeResponse(), nil
	}
}

// attestError maps an attestor's error to a status once: what the agent
// presented is its fault (InvalidArgument, PermissionDenied); anything
// else is the server's and is logged.
func (s *Server) attestError(ctx context.Context, typ string, err error) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	switch {
	case errors.Is(err, nodeattest.ErrMalformed):
		return status.Errorf(codes.InvalidArgument, "failed to attest: %v", err)
	case errors.Is(err, nodeattest.ErrDenied):
		return status.Errorf(codes.PermissionDenied, "failed to attest: %v", err)
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	return s.internalError(ctx, "node attestation failed", fmt.Errorf("attestor %s: %w", typ, err))
}

// refuseBanned refuses an agent whose node record is banned: only evicting
// it (deleting the record) lets it attest again.
func (a *agentService) refuseBanned(ctx context.Context, id spiffeid.ID) error {
	node, err := a.s.cfg.Store.AttestedNode(ctx, id)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil
	case err != nil:
		return a.s.internalError(ctx, "could not read the attested node", err)
	case node.Banned():
		return status.Error(codes.PermissionDenied, "failed to attest: agent is banned")
	}
	return nil
}

// parseAgentCSR parses the agent's CSR and checks its signature, which
// proves the agent holds the key it asks us to certify (spire-server does
// not check it; treaty does).
func parseAgentCSR(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to parse CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid CSR signature: %v", err)
	}
	return csr, nil
}

// signAgent issues the agent's X509-SVID for the CSR's public key: one URI
// SAN, the agent ID (the CSR's subject and SANs are ignored), lifetime
// AgentSVIDTTL capped by the authority.
func (s *Server) signAgent(ctx context.Context, id spiffeid.ID, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	chain, err := s.cfg.Signer.SignX509SVID(ca.X509SVIDParams{ID: id, PublicKey: csr.PublicKey, TTL: s.cfg.AgentSVIDTTL})
	if err != nil {
		return nil, s.internalError(ctx, "could not sign the agent SVID", err)
	}
	s.stats.issuedAgent()
	return chain, nil
}

// recordAttestation creates the agent's node record, or updates it for an
// agent attesting again: the new SVID is current, a pending renewal is
// dropped, and the selectors are replaced by those attestation gave now.
func (s *Server) recordAttestation(ctx context.Context, att attested) error {
	leaf := att.chain[0]
	node := datastore.AttestedNode{
		SPIFFEID:        att.result.AgentID,
		AttestationType: att.typ,
		SerialNumber:    leaf.SerialNumber.String(),
		NotAfter:        leaf.NotAfter,
		CanReattest:     att.result.CanReattest,
		Selectors:       storeSelectors(att.result.Selectors),
	}
	_, err := s.cfg.Store.CreateAttestedNode(ctx, node)
	if errors.Is(err, datastore.ErrAlreadyExists) {
		err = s.reattested(ctx, node)
	}
	if err != nil {
		return s.internalError(ctx, "could not record the attested node", err)
	}
	s.log.InfoContext(ctx, "agent attested", attrAgentID, node.SPIFFEID.String(), attrAttestor, att.typ)
	return nil
}

// reattested updates an existing node with a new attestation, keeping what
// only the agent reports (its version).
func (s *Server) reattested(ctx context.Context, node datastore.AttestedNode) error {
	old, err := s.cfg.Store.AttestedNode(ctx, node.SPIFFEID)
	if err != nil {
		return err
	}
	if old.Banned() { // banned since we looked
		return status.Error(codes.PermissionDenied, "failed to attest: agent is banned")
	}
	node.AgentVersion = old.AgentVersion
	_, err = s.cfg.Store.UpdateAttestedNode(ctx, node)
	return err
}

func storeSelectors(in []nodeattest.Selector) []datastore.Selector {
	out := make([]datastore.Selector, 0, len(in))
	for _, sel := range in {
		out = append(out, datastore.Selector{Type: sel.Type, Value: sel.Value})
	}
	return out
}

// agentSVIDProto is an agent SVID on the wire: DER leaf, then intermediates.
func agentSVIDProto(id spiffeid.ID, chain []*x509.Certificate) *types.X509SVID {
	out := &types.X509SVID{
		Id:        &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
		ExpiresAt: chain[0].NotAfter.Unix(),
	}
	for _, c := range chain {
		out.CertChain = append(out.CertChain, c.Raw)
	}
	return out
}

// RenewAgent issues a new SVID to an agent that cannot attest again
// (join_token). The new SVID is recorded as the node's new one; the
// current one stays valid until the agent first presents the new one.
func (a *agentService) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	node, err := a.s.agentCaller(ctx)
	if err != nil {
		return nil, err
	}
	if node.CanReattest {
		return nil, withReason("agent must reattest instead of renew", types.PermissionDeniedDetails_AGENT_MUST_REATTEST)
	}
	if len(req.GetParams().GetCsr()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "malformed param: missing CSR")
	}
	csr, err := parseAgentCSR(req.GetParams().GetCsr())
	if err != nil {
		return nil, err
	}
	chain, err := a.s.signAgent(ctx, node.SPIFFEID, csr)
	if err != nil {
		return nil, err
	}
	node.NewSerialNumber, node.NewNotAfter = chain[0].SerialNumber.String(), chain[0].NotAfter
	if _, err := a.s.cfg.Store.UpdateAttestedNode(ctx, node); err != nil {
		return nil, a.s.internalError(ctx, "could not record the renewed agent SVID", err)
	}
	a.s.stats.renewed()
	return &agentv1.RenewAgentResponse{Svid: agentSVIDProto(node.SPIFFEID, chain)}, nil
}

// PostStatus records the version the agent reports. The agent only logs
// this call's errors.
func (a *agentService) PostStatus(ctx context.Context, req *agentv1.PostStatusRequest) (*agentv1.PostStatusResponse, error) {
	node, err := a.s.agentCaller(ctx)
	if err != nil {
		return nil, err
	}
	if node.AgentVersion != req.GetAgentVersion() {
		node.AgentVersion = req.GetAgentVersion()
		if _, err := a.s.cfg.Store.UpdateAttestedNode(ctx, node); err != nil {
			return nil, a.s.internalError(ctx, "could not record the agent version", err)
		}
	}
	return &agentv1.PostStatusResponse{}, nil
}
