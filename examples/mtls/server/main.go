// Command server is the called side of the cross-domain mTLS example: a
// service in beta.test that only spiffe://alpha.test/svc/provisioning may
// call. See examples/mtls/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/treatyhq/treaty/examples/mtls/service"
)

func main() {
	socket := flag.String("socketPath", "/tmp/treaty/public/workload.sock", "the Workload API socket of this host's treaty server")
	addr := flag.String("addr", "127.0.0.1:9443", "address to listen on")
	allow := flag.String("allow", "spiffe://alpha.test/svc/provisioning", "the SPIFFE ID allowed to call")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*socket, *addr, *allow, log); err != nil {
		log.Error("server stopped", "error", err)
		os.Exit(1)
	}
}

func run(socket, addr, allow string, log *slog.Logger) error {
	allowed, err := spiffeid.FromString(allow)
	if err != nil {
		return fmt.Errorf("-allow: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+socket)))
	if err != nil {
		return fmt.Errorf("get an SVID from the Workload API at %s: %w", socket, err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	log.Info("serving", "spiffe_id", svid.ID.String(), "addr", l.Addr().String(), "allowed", allowed.String())
	return (&service.Server{Source: source, Allowed: []spiffeid.ID{allowed}, Logger: log}).Serve(ctx, l)
}
