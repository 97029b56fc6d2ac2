package cli

import (
	"context"
	"math"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
)

func tokenCommands() []command {
	return []command{
		{"token generate", "generate a join token with which an agent attests", runTokenGenerate},
	}
}

func runTokenGenerate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "token generate")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	ttl := fs.Int("ttl", 600, "how long the token is valid, in seconds")
	spiffeID := fs.String("spiffeID", "", "a SPIFFE ID the agent attesting with the token also gets, through an entry parented by the agent (optional)")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	if *ttl < 1 || *ttl > math.MaxInt32 {
		return usagef("-ttl %d: give the token's lifetime in seconds, at least 1", *ttl)
	}
	var agentID *types.SPIFFEID
	if *spiffeID != "" {
		id, err := spiffeid.FromString(*spiffeID)
		if err != nil {
			return usagef("-spiffeID %q: %v", *spiffeID, err)
		}
		agentID = apiID(id)
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		tok, err := agentv1.NewAgentClient(conn).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{AgentId: agentID, Ttl: int32(*ttl)}) //nolint:gosec // checked above
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, tok)
		}
		e.printf("Token: %s\n", tok.GetValue())
		if agentID == nil {
			// spire-server's line, on standard output as it prints it.
			e.printf("Warning: Missing SPIFFE ID.\n")
		}
		return nil
	})
}
