package server

import "github.com/treatyhq/treaty/internal/bundledir"

// signedBundles returns what applies federation.signed_bundles_dir, nil
// without one. A stored bundle is announced through the refresher, as a
// bundle set by hand is, so that workloads, agents and the SPIRE gateway's
// sink get it.
func (s *Server) signedBundles() *bundledir.Dir {
	dir := s.cfg.Federation.SignedBundlesDir
	if dir == "" {
		return nil
	}
	return bundledir.New(bundledir.Config{
		Dir: dir, Pins: s.cfg.Federation.SignedBundlePins, Local: s.cfg.TrustDomain,
		Store: s.store, Notifier: s.refresher, Logger: s.log.With(attrComponent, "signedbundles"),
	})
}
