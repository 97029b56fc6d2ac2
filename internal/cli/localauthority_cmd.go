package cli

import (
	"context"
	"strings"
	"time"

	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/treatyhq/treaty/internal/adminwire"
)

// authorityKind describes the X.509 or JWT half of the LocalAuthority API.
type authorityKind struct {
	word  string // as on the command line: x509 or jwt
	title string // as printed: X.509 or JWT
	show  func(context.Context, localauthorityv1.LocalAuthorityClient) (stateResponse, error)
	// act calls prepare, activate, taint or revoke.
	act map[string]func(context.Context, localauthorityv1.LocalAuthorityClient, string, ...grpc.CallOption) (*localauthorityv1.AuthorityState, proto.Message, error)
}

// stateResponse is what both Get*AuthorityState responses have in common.
type stateResponse interface {
	proto.Message
	GetActive() *localauthorityv1.AuthorityState
	GetPrepared() *localauthorityv1.AuthorityState
	GetOld() *localauthorityv1.AuthorityState
}

type laClient = localauthorityv1.LocalAuthorityClient
type laState = localauthorityv1.AuthorityState

var x509Kind = authorityKind{
	word: "x509", title: "X.509",
	show: func(ctx context.Context, c laClient) (stateResponse, error) {
		return c.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	},
	act: map[string]func(context.Context, laClient, string, ...grpc.CallOption) (*laState, proto.Message, error){
		"prepare": func(ctx context.Context, c laClient, _ string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{}, opts...)
			return r.GetPreparedAuthority(), r, err
		},
		"activate": func(ctx context.Context, c laClient, id string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: id}, opts...)
			return r.GetActivatedAuthority(), r, err
		},
		"taint": func(ctx context.Context, c laClient, id string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: id}, opts...)
			return r.GetTaintedAuthority(), r, err
		},
		"revoke": func(ctx context.Context, c laClient, id string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: id}, opts...)
			return r.GetRevokedAuthority(), r, err
		},
	},
}

var jwtKind = authorityKind{
	word: "jwt", title: "JWT",
	show: func(ctx context.Context, c laClient) (stateResponse, error) {
		return c.GetJWTAuthorityState(ctx, &localauthorityv1.GetJWTAuthorityStateRequest{})
	},
	act: map[string]func(context.Context, laClient, string, ...grpc.CallOption) (*laState, proto.Message, error){
		"prepare": func(ctx context.Context, c laClient, _ string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.PrepareJWTAuthority(ctx, &localauthorityv1.PrepareJWTAuthorityRequest{}, opts...)
			return r.GetPreparedAuthority(), r, err
		},
		"activate": func(ctx context.Context, c laClient, id string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: id}, opts...)
			return r.GetActivatedAuthority(), r, err
		},
		"taint": func(ctx context.Context, c laClient, id string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: id}, opts...)
			return r.GetTaintedAuthority(), r, err
		},
		"revoke": func(ctx context.Context, c laClient, id string, opts ...grpc.CallOption) (*laState, proto.Message, error) {
			r, err := c.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: id}, opts...)
			return r.GetRevokedAuthority(), r, err
		},
	},
}

// verbs of the lifecycle, with what they print and whether they need an ID.
var authorityVerbs = []struct {
	verb, synopsis, done string
	needsID              bool
}{
	{"prepare", "create and publish the next %s authority without using it", "Prepared", false},
	{"activate", "start signing with the prepared %s authority", "Activated", true},
	{"taint", "mark an old %s authority as no longer trusted", "Tainted", true},
	{"revoke", "remove a tainted old %s authority from the bundle", "Revoked", true},
}

func localAuthorityCommands() []command {
	var cmds []command
	for _, k := range []authorityKind{x509Kind, jwtKind} {
		cmds = append(cmds, command{"localauthority " + k.word + " show", "show the active, prepared and old " + k.title + " authorities", showAuthorities(k)})
		for _, v := range authorityVerbs {
			cmds = append(cmds, command{
				name:     "localauthority " + k.word + " " + v.verb,
				synopsis: sprintf(v.synopsis, k.title),
				run:      actOnAuthority(k, v.verb, v.done, v.needsID),
			})
		}
	}
	return cmds
}

func showAuthorities(k authorityKind) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, "localauthority "+k.word+" show")
		socketPath, output := socketFlag(fs), outputFlag(fs)
		if err := parseOutput(fs, args, output); err != nil {
			return err
		}
		return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := k.show(ctx, localauthorityv1.NewLocalAuthorityClient(conn))
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return printJSON(e.stdout, resp)
			}
			printState(e, "Active", k, resp.GetActive(), false)
			printState(e, "Prepared", k, resp.GetPrepared(), false)
			printState(e, "Old", k, resp.GetOld(), true)
			return nil
		})
	}
}

// printState prints one slot as spire-server does, so scripts written
// against its output keep working.
func printState(e *env, label string, k authorityKind, st *laState, last bool) {
	e.printf("%s %s authority:\n", label, k.title)
	if st == nil {
		e.printf("  No %s %s authority found\n", strings.ToLower(label), k.title)
	} else {
		printAuthority(e, k, st)
	}
	if !last {
		e.printf("\n")
	}
}

func printAuthority(e *env, k authorityKind, st *laState) {
	e.printf("  Authority ID: %s\n", st.GetAuthorityId())
	e.printf("  Expires at: %s\n", time.Unix(st.GetExpiresAt(), 0).UTC())
	if k.word != "x509" {
		return
	}
	if upstream := st.GetUpstreamAuthoritySubjectKeyId(); upstream != "" {
		e.printf("  Upstream authority Subject Key ID: %s\n", upstream)
		return
	}
	e.printf("  Upstream authority ID: No upstream authority\n")
}

func actOnAuthority(k authorityKind, verb, done string, needsID bool) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, "localauthority "+k.word+" "+verb)
		socketPath, output := socketFlag(fs), outputFlag(fs)
		id := new(string)
		if needsID {
			id = fs.String("authorityID", "", "ID of the authority (see `treaty localauthority "+k.word+" show`)")
		}
		force := new(bool)
		if k.word == "x509" && verb == "activate" {
			force = fs.Bool("force", false, "activate even though partners have not fetched the bundle holding the authority; they reject SVIDs it signs until they do")
		}
		if err := parseOutput(fs, args, output); err != nil {
			return err
		}
		if *force {
			ctx = metadata.AppendToOutgoingContext(ctx, adminwire.ForceHeader, "true")
		}
		if needsID && *id == "" {
			return usagef("-authorityID is required; find it with `treaty localauthority %s show`", k.word)
		}
		return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
			var header metadata.MD
			st, resp, err := k.act[verb](ctx, localauthorityv1.NewLocalAuthorityClient(conn), *id, grpc.Header(&header))
			if err != nil {
				return err
			}
			for _, w := range header.Get(adminwire.WarningHeader) {
				e.warnf("%s", w)
			}
			if *output == outputJSON {
				return printJSON(e.stdout, resp)
			}
			e.printf("%s %s authority:\n", done, k.title)
			printAuthority(e, k, st)
			return nil
		})
	}
}
