package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/socket"
)

// maxAnswer is the largest answer the CLI takes from the server: the
// federation status of 10,000 partners is about 5 MB, over gRPC's default
// of 4 MiB.
const maxAnswer = 256 << 20

// callTimeout bounds every admin API call the CLI makes.
const callTimeout = 30 * time.Second

// socketFlag registers -socketPath, spelled as spire-server spells it.
func socketFlag(fs *flag.FlagSet) *string {
	return fs.String("socketPath", socket.DefaultAdminPath, "path to the treaty server's admin socket")
}

// dial connects to the admin socket. Connection problems surface on the
// first call, where adminError explains them.
func dial(socketPath string) (*grpc.ClientConn, error) {
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return nil, fmt.Errorf("socket path %q: %w", socketPath, err)
	}
	conn, err := grpc.NewClient("unix://"+abs, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxAnswer)))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", abs, err)
	}
	return conn, nil
}

// withClient dials socketPath and calls fn with a bounded context.
func withClient(ctx context.Context, socketPath string, fn func(ctx context.Context, conn *grpc.ClientConn) error) error {
	conn, err := dial(socketPath)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return adminError(socketPath, fn(ctx, conn))
}

// adminError turns gRPC failures into messages that say what to do.
func adminError(socketPath string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		// The server never answers Unavailable itself: this is the
		// connection to the admin socket failing.
		return fmt.Errorf("cannot reach a treaty server at %s: is it running? Start one with `treaty server run`, or point -socketPath at its admin_socket", socketPath)
	case codes.DeadlineExceeded:
		return fmt.Errorf("the server at %s did not answer within %s", socketPath, callTimeout)
	case codes.Unimplemented:
		return fmt.Errorf("the server at %s does not implement this call (%s): is it an older treaty or a different server?", socketPath, st.Message())
	case codes.ResourceExhausted:
		if m := tooLarge.FindStringSubmatch(st.Message()); m != nil {
			return fmt.Errorf("a message to or from the server at %s is %s bytes, over gRPC's limit of %s, so it was refused and nothing was stored. "+
				"A bundle may hold at most %d keys and %d bytes (1 MiB): check the input, or send fewer bundles at once", socketPath, m[1], m[2], bundle.MaxKeys, bundle.MaxDocumentBytes)
		}
	}
	return errors.New(st.Message())
}

// tooLarge matches gRPC's refusal of a message over its size limit, with
// the message's size and the limit.
var tooLarge = regexp.MustCompile(`larger than max \((\d+) vs\. (\d+)\)`)
