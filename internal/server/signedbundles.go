package server

import (
	"time"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/bundledir"
)

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

// signedBundleStatus reports the signed bundles directory's files for the
// federation status; nil without a directory.
func (s *Server) signedBundleStatus() []adminwire.SignedBundleFile {
	if s.signedDir == nil {
		return nil
	}
	out := []adminwire.SignedBundleFile{}
	for _, st := range s.signedDir.Status() {
		out = append(out, adminwire.SignedBundleFile{File: st.File, TrustDomain: st.TrustDomain, Sequence: st.Sequence,
			Result: st.Result, Reason: st.Reason, KeyID: st.KeyID, At: st.At.UTC().Format(time.RFC3339)})
	}
	return out
}
