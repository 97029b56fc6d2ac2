package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/spiregw"
)

// localSource is where the local bundle and the bundle endpoint's
// X509-SVID come from: treaty's own CA, or the SPIRE server treaty is the
// federation layer of (gateway mode).
type localSource interface {
	TrustDomain() spiffeid.TrustDomain
	Bundle() *spiffebundle.Bundle
	Document() ([]byte, uint64)
	Changed() <-chan struct{}
	MintX509SVID(id spiffeid.ID) (*x509svid.SVID, error)
}

// gatewayMode reports whether treaty is the federation layer of a SPIRE
// server rather than a CA of its own.
func (s *Server) gatewayMode() bool { return s.cfg.SPIREServer.AdminSocket != "" }

// startLocal starts where the local bundle comes from: the CA, or in
// gateway mode the SPIRE server's bundle.
func (s *Server) startLocal(ctx context.Context) error {
	if !s.gatewayMode() {
		if err := s.startCA(ctx); err != nil {
			return err
		}
		s.local = s.ca
		return nil
	}
	gw, err := spiregw.New(ctx, spiregw.Config{
		SocketPath: s.cfg.SPIREServer.AdminSocket, TrustDomain: s.cfg.TrustDomain, Store: s.store,
		Logger: s.log.With(attrComponent, "spire-gateway"),
	})
	if err != nil {
		return fmt.Errorf("spire_server: %w", err)
	}
	s.gateway, s.local = gw, gw
	s.log.Info("treaty is the federation layer of the SPIRE server; it runs no CA of its own", "spire_admin_socket", s.cfg.SPIREServer.AdminSocket)
	return nil
}

// gatewayBundle is the SPIRE server's bundle as the admin API's Bundle
// service and treaty doctor see it: SPIRE's authorities are SPIRE's to
// show and change.
type gatewayBundle struct{ *spiregw.Gateway }

func (gatewayBundle) Authorities(datastore.AuthorityKind) []ca.AuthorityInfo { return nil }
func (gatewayBundle) IsTainted(datastore.AuthorityKind, string) bool         { return false }
func (gatewayBundle) State(datastore.AuthorityKind) ca.State                 { return ca.State{} }

func (gatewayBundle) Append(context.Context, []*x509.Certificate, []ca.ExternalJWTKey) error {
	return errors.New("the local bundle is the SPIRE server's: append to it with spire-server bundle append, and treaty publishes the result")
}
