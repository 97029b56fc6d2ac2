// Command client is the calling side of the cross-domain mTLS example: a
// workload in alpha.test that calls the beta.test service with one of its
// SVIDs (chosen by entry hint). See examples/mtls/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/treatyhq/treaty/examples/mtls/service"
)

func main() {
	socket := flag.String("socketPath", "/tmp/treaty/public/workload.sock", "the Workload API socket of this host's treaty server")
	url := flag.String("url", "https://127.0.0.1:9443/", "the service to call")
	server := flag.String("serverID", "spiffe://beta.test/svc/firmware", "the SPIFFE ID the service must present")
	hint := flag.String("hint", "", "present the SVID whose entry has this hint (default: the first)")
	flag.Parse()
	if err := run(*socket, *url, *server, *hint); err != nil {
		fmt.Fprintln(os.Stderr, "call failed:", err)
		os.Exit(1)
	}
}

func run(socket, url, server, hint string) error {
	serverID, err := spiffeid.FromString(server)
	if err != nil {
		return fmt.Errorf("-serverID: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(workloadapi.WithAddr("unix://" + socket))}
	if hint != "" {
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(service.PickByHint(hint)))
	}
	source, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return fmt.Errorf("get an SVID from the Workload API at %s: %w", socket, err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		return err
	}
	fmt.Printf("calling %s as %s\n", url, svid.ID)
	body, err := service.Call(ctx, source, source, url, serverID)
	if err != nil {
		return err
	}
	fmt.Print(body)
	return nil
}
