package cli

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminapi"
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
	ttl := fs.Duration("ttl", adminapi.DefaultInviteTTL, "how long the invite can be joined")
	embed := fs.Bool("embedBundle", false, "carry our bundle in the invite (longer token; no first fetch needs trusting)")
	reverse := fs.Bool("reverse", false, "ask the partner to answer with an invite of theirs, to federate both ways")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	req, err := structpb.NewStruct(map[string]any{"url": *url, "ttl_seconds": ttl.Seconds(), "embed_bundle": *embed, "reverse": *reverse})
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminapi.InviteMethod, req, resp); err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		f := resp.GetFields()
		e.printf("%s\n", f["token"].GetStringValue())
		e.warnf("give the line above to the partner; on their server they run: treaty federation join <invite>\n"+
			"  it is for %s at %s (%s), valid until %s, and can be joined once",
			f["trust_domain"].GetStringValue(), f["url"].GetStringValue(), f["profile"].GetStringValue(), f["expires"].GetStringValue())
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
	req, err := structpb.NewStruct(map[string]any{"token": token, "reverse": *reverse, "url": *url})
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminapi.JoinMethod, req, resp); err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		f := resp.GetFields()
		e.printf("Joined %s: its bundle (sequence %.0f) matches the invite and is stored; the relationship polls %s (%s).\n",
			f["trust_domain"].GetStringValue(), f["sequence"].GetNumberValue(), f["url"].GetStringValue(), f["profile"].GetStringValue())
		if rt := f["reverse_token"].GetStringValue(); rt != "" {
			e.printf("\nFor %s to federate with us too, they run:\n\n  treaty federation join %s\n", f["trust_domain"].GetStringValue(), rt)
		}
		return nil
	})
}
