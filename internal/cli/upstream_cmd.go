package cli

import (
	"context"

	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func upstreamAuthorityCommands() []command {
	return []command{
		{"upstreamauthority taint", "mark the upstream authority that signed the old X.509 authority as no longer trusted", runUpstreamTaint},
		{"upstreamauthority revoke", "remove a tainted upstream authority's old X.509 authority", runUpstreamRevoke},
	}
}

// upstreamResult is what both upstream responses have in common.
type upstreamResult interface {
	proto.Message
	GetUpstreamAuthoritySubjectKeyId() string
}

func runUpstreamTaint(ctx context.Context, e *env, args []string) error {
	return upstreamCall(ctx, e, "taint", "Tainted", args, func(ctx context.Context, c localauthorityv1.LocalAuthorityClient, skid string) (upstreamResult, error) {
		return c.TaintX509UpstreamAuthority(ctx, &localauthorityv1.TaintX509UpstreamAuthorityRequest{SubjectKeyId: skid})
	})
}

func runUpstreamRevoke(ctx context.Context, e *env, args []string) error {
	return upstreamCall(ctx, e, "revoke", "Revoked", args, func(ctx context.Context, c localauthorityv1.LocalAuthorityClient, skid string) (upstreamResult, error) {
		return c.RevokeX509UpstreamAuthority(ctx, &localauthorityv1.RevokeX509UpstreamAuthorityRequest{SubjectKeyId: skid})
	})
}

// upstreamCall parses -subjectKeyID, makes the call and prints its result
// as spire-server does.
func upstreamCall(ctx context.Context, e *env, verb, done string, args []string,
	call func(context.Context, localauthorityv1.LocalAuthorityClient, string) (upstreamResult, error)) error {
	fs := newFlags(e, "upstreamauthority "+verb)
	socketPath, output := socketFlag(fs), outputFlag(fs)
	skid := fs.String("subjectKeyID", "", "the subject key ID of the upstream authority's CA certificate (see `treaty localauthority x509 show`)")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	if *skid == "" {
		return usagef("the Subject Key ID of the X.509 upstream authority is required (-subjectKeyID); find it with `treaty localauthority x509 show`")
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		r, err := call(ctx, localauthorityv1.NewLocalAuthorityClient(conn), *skid)
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, r)
		}
		e.printf("%s X.509 upstream authority:\n  Subject Key ID: %s\n", done, r.GetUpstreamAuthoritySubjectKeyId())
		return nil
	})
}
