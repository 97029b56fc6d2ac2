package cli

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func runHealthcheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "healthcheck")
	socketPath := socketFlag(fs)
	shallow := fs.Bool("shallow", false, "accepted for spire-server compatibility; the check is the same")
	verbose := fs.Bool("verbose", false, "print what is checked")
	if err := parse(fs, args); err != nil {
		return err
	}
	_ = shallow
	if *verbose {
		fmt.Fprintf(e.stderr, "Checking server health at %s...\n", *socketPath)
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("server is unhealthy: %s", resp.GetStatus())
		}
		e.printf("Server is healthy.\n")
		return nil
	})
}
