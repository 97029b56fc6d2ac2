// Package service is a small HTTP service and client that authenticate
// each other with X509-SVIDs from the SPIFFE Workload API and authorise
// by SPIFFE ID, across trust domains. The programs in examples/mtls run
// it; treaty's demo uses it too.
package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Server answers "hello <caller>" to callers whose SPIFFE ID is in Allowed
// and refuses every other caller during the TLS handshake, logging who was
// refused and why.
type Server struct {
	// Source supplies the server's SVID and the bundles it trusts,
	// including federated ones (workloadapi.NewX509Source).
	Source *workloadapi.X509Source
	// Allowed lists the client SPIFFE IDs that may call.
	Allowed []spiffeid.ID
	Logger  *slog.Logger
}

// authorize is the SPIFFE ID check run after the peer's chain verified
// against the bundle of its trust domain.
func (s *Server) authorize(id spiffeid.ID, _ [][]*x509.Certificate) error {
	if slices.Contains(s.Allowed, id) {
		s.Logger.Info("caller authorised", "caller", id.String())
		return nil
	}
	s.Logger.Warn("caller refused: its SPIFFE ID is not allowed to call this service",
		"caller", id.String(), "allowed", fmt.Sprint(s.Allowed))
	return fmt.Errorf("SPIFFE ID %s is not authorised", id)
}

// Serve serves on l until ctx is done.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	cfg := tlsconfig.MTLSServerConfig(s.Source, s.Source, s.authorize)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
			if err != nil {
				http.Error(w, "no SPIFFE ID", http.StatusForbidden)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "hello %s\n", id) //nolint:gosec // a text/plain answer, and the ID is a verified SPIFFE ID
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	err := srv.Serve(tls.NewListener(l, cfg))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Call does GET url over mTLS, presenting the SVID from svids, and
// accepts only a server whose SPIFFE ID is serverID and whose chain
// verifies against bundles. A workload with several SVIDs chooses one with
// workloadapi.WithDefaultX509SVIDPicker on its X509Source.
func Call(ctx context.Context, svids x509svid.Source, bundles x509bundle.Source, url string, serverID spiffeid.ID) (string, error) {
	cfg := tlsconfig.MTLSClientConfig(svids, bundles, tlsconfig.AuthorizeID(serverID))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), nil
}

// PickByHint returns a picker for workloadapi.WithDefaultX509SVIDPicker
// that chooses the SVID whose entry hint is hint, or the first SVID if no
// entry has that hint (the server still decides whether that one may call).
func PickByHint(hint string) func([]*x509svid.SVID) *x509svid.SVID {
	return func(svids []*x509svid.SVID) *x509svid.SVID {
		for _, s := range svids {
			if s.Hint == hint {
				return s
			}
		}
		return svids[0]
	}
}
