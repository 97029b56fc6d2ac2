package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/datastore"
)

// agentCaller returns the attested node of the agent making the call, after
// the checks spire-server makes, in its order (docs/design/agent-api.md,
// "Authorising agent calls"): the SVID has not expired, a node record
// exists for its SPIFFE ID, the node is not banned, and the SVID is the
// node's current one or its renewed one, which then becomes current. A
// refusal is PermissionDenied with PermissionDeniedDetails, the only thing
// the agent acts on (reattest, or delete its SVID and exit).
func (s *Server) agentCaller(ctx context.Context) (datastore.AttestedNode, error) {
	leaf, err := peerSVID(ctx)
	if err != nil {
		return datastore.AttestedNode{}, err
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return datastore.AttestedNode{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	if s.cfg.Now().After(leaf.NotAfter) {
		return datastore.AttestedNode{}, s.denied(ctx, id, types.PermissionDeniedDetails_AGENT_EXPIRED)
	}
	node, err := s.cfg.Store.AttestedNode(ctx, id)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		s.stats.forget(id) // evicted
		return node, s.denied(ctx, id, types.PermissionDeniedDetails_AGENT_NOT_ATTESTED)
	case err != nil:
		return node, s.internalError(ctx, "could not read the attested node", err)
	case node.Banned():
		return node, s.denied(ctx, id, types.PermissionDeniedDetails_AGENT_BANNED)
	}
	node, err = s.activeSerial(ctx, node, leaf.SerialNumber.String())
	if err == nil {
		s.stats.seen(id, s.cfg.Now())
	}
	return node, err
}

// activeSerial accepts the node's current serial, and its new one after
// promoting it: the agent presents its renewed SVID for the first time.
func (s *Server) activeSerial(ctx context.Context, node datastore.AttestedNode, serial string) (datastore.AttestedNode, error) {
	if serial == node.SerialNumber {
		return node, nil
	}
	if serial != node.NewSerialNumber {
		return node, s.denied(ctx, node.SPIFFEID, types.PermissionDeniedDetails_AGENT_NOT_ACTIVE)
	}
	promoted, err := s.cfg.Store.PromoteNewSerial(ctx, node.SPIFFEID, serial)
	if err != nil {
		return node, s.internalError(ctx, "could not promote the agent's new SVID", err)
	}
	if !promoted { // banned or renewed again in the meantime
		return node, s.denied(ctx, node.SPIFFEID, types.PermissionDeniedDetails_AGENT_NOT_ACTIVE)
	}
	node.SerialNumber, node.NotAfter = node.NewSerialNumber, node.NewNotAfter
	node.NewSerialNumber, node.NewNotAfter = "", time.Time{}
	return node, nil
}

// peerSVID returns the leaf of the caller's client certificate, which the
// TLS handshake verified as an X509-SVID of our trust domain.
func peerSVID(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			return info.State.PeerCertificates[0], nil
		}
	}
	return nil, status.Error(codes.PermissionDenied, "caller does not have an X509-SVID")
}

// denied is spire-server's refusal of an agent: the method in the message,
// the reason in the details.
func (s *Server) denied(ctx context.Context, id spiffeid.ID, reason types.PermissionDeniedDetails_Reason) error {
	method, _ := grpc.Method(ctx)
	s.log.InfoContext(ctx, "agent call denied", attrAgentID, id.String(), attrMethod, method, attrReason, reason.String())
	return withReason(fmt.Sprintf("authorization denied for method %s", method), reason)
}

// withReason is a PermissionDenied status carrying reason as
// PermissionDeniedDetails.
func withReason(msg string, reason types.PermissionDeniedDetails_Reason) error {
	st, err := status.New(codes.PermissionDenied, msg).WithDetails(&types.PermissionDeniedDetails{Reason: reason})
	if err != nil { // only if the details cannot be marshalled
		return status.Error(codes.PermissionDenied, msg)
	}
	return st.Err()
}
