package cli

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
)

func inviteCommands() []command {
	return []command{
		{"federation invite", "print a one-line invite a partner joins with treaty federation join (no bundle copied by hand)", runInvite},
		{"federation join", "federate with the partner that made an invite, after checking its bundle against the invite", runJoin},
	}
}

func runInvite(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "federation invite")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	url := fs.String("url", "", "the URL partners reach our bundle endpoint at (default: https://<bundle_endpoint.address>)")
	ttl := fs.Duration("ttl", adminwire.DefaultInviteTTL, "how long the invite can be joined")
	embed := fs.Bool("embedBundle", false, "carry our bundle in the invite (longer token; no first fetch needs trusting)")
	reverse := fs.Bool("reverse", false, "ask the partner to answer with an invite of theirs, to federate both ways")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	req, err := adminwire.ToStruct(adminwire.InviteRequest{URL: *url, TTLSeconds: ttl.Seconds(), EmbedBundle: *embed, Reverse: *reverse})
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		raw := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminwire.InviteMethod, req, raw); err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, raw)
		}
		var resp adminwire.InviteResponse
		if err := adminwire.FromStruct(raw, &resp); err != nil {
			return err
		}
		e.printf("%s\n", resp.Token)
		// Guidance, not a warning: on stderr, so that stdout is the token alone.
		fmt.Fprintf(e.stderr, "Give the line above to the partner over a channel you trust (it is checksummed, not signed); on their server they run:\n"+
			"  treaty federation join <invite>\n"+
			"It is for %s at %s (%s), valid until %s, and can be joined once.\n",
			resp.TrustDomain, resp.URL, resp.Profile, resp.Expires)
		return nil
	})
}

func runJoin(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "federation join")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	reverse := fs.Bool("reverse", false, "print an invite of ours for the partner, to federate both ways")
	url := fs.String("url", "", "with -reverse: the URL the partner reaches our bundle endpoint at")
	token, err := parseWithArg(fs, args, "the invite (treaty-invite-1.…)")
	if err != nil {
		return err
	}
	if err := checkChoice("output", *output, outputPretty, outputJSON); err != nil {
		return err
	}
	req, err := adminwire.ToStruct(adminwire.JoinRequest{Token: token, Reverse: *reverse, URL: *url})
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		raw := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminwire.JoinMethod, req, raw); err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, raw)
		}
		var resp adminwire.JoinResponse
		if err := adminwire.FromStruct(raw, &resp); err != nil {
			return err
		}
		e.printf("Joined %s: its bundle (sequence %d) matches the invite and is stored; the relationship polls %s (%s).\n",
			resp.TrustDomain, resp.Sequence, resp.URL, resp.Profile)
		if resp.ReverseToken != "" {
			e.printf("\nFor %s to federate with us too, they run:\n\n  treaty federation join %s\n", resp.TrustDomain, resp.ReverseToken)
		}
		return nil
	})
}
