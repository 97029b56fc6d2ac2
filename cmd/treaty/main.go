// Command treaty runs a SPIFFE trust-domain server built for federation and
// is its command-line client. See `treaty -h`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/treatyhq/treaty/internal/cli"
	"github.com/treatyhq/treaty/internal/servercmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, servercmd.Commands()...)
	stop()
	os.Exit(code)
}
