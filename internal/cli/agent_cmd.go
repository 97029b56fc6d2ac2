package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func agentCommands() []command {
	return []command{
		{"agent list", "list attested agents, optionally filtered", runAgentList},
		{"agent show", "show an attested agent given its SPIFFE ID", runAgentShow},
		{"agent count", "count attested agents", runAgentCount},
		{"agent ban", "ban an attested agent: it cannot renew or attest again until evicted", runAgentBan},
		{"agent evict", "evict an attested agent: delete it, so it must attest again", runAgentEvict},
		{"agent purge", "evict agents that can re-attest and whose SVID expired long ago", runAgentPurge},
	}
}

// expiresBeforeLayout is the layout of -expiresBefore, as spire-server takes it.
const expiresBeforeLayout = "2006-01-02 15:04:05 -0700 -07"

// triFlag is spire-server's true/false/any filter flag: "true" and "false"
// filter, any other value (or none) does not.
type triFlag struct{ v *wrapperspb.BoolValue }

func (f *triFlag) String() string { return "" }

func (f *triFlag) Set(s string) error {
	switch s {
	case "true":
		f.v = wrapperspb.Bool(true)
	case "false":
		f.v = wrapperspb.Bool(false)
	default:
		f.v = nil
	}
	return nil
}

// agentFilterFlags are list's and count's filters.
type agentFilterFlags struct {
	attestationType, expiresBefore, matchSelectors string
	selectors                                      listFlag
	banned, canReattest                            triFlag
}

func (f *agentFilterFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.selectors, "selector", "a type:value selector the agent must have, e.g. x509pop:subject:cn:node-1 (repeatable)")
	fs.StringVar(&f.attestationType, "attestationType", "", "only agents that attested this way, e.g. join_token or x509pop")
	fs.Var(&f.canReattest, "canReattest", "true: only agents that can re-attest; false: only those that cannot; anything else: all")
	fs.Var(&f.banned, "banned", "true: only banned agents; false: only agents not banned; anything else: all")
	fs.StringVar(&f.expiresBefore, "expiresBefore", "", "only agents whose SVID expires before this time (format: \""+expiresBeforeLayout+"\")")
	fs.StringVar(&f.matchSelectors, "matchSelectorsOn", "superset", "how -selector matches: exact, any, superset or subset")
}

// filter builds the API filter; List and Count share its fields.
func (f *agentFilterFlags) filter() (*agentv1.ListAgentsRequest_Filter, error) {
	out := &agentv1.ListAgentsRequest_Filter{ByAttestationType: f.attestationType, ByBanned: f.banned.v, ByCanReattest: f.canReattest.v}
	if f.expiresBefore != "" {
		if _, err := time.Parse(expiresBeforeLayout, f.expiresBefore); err != nil {
			return nil, usagef("-expiresBefore %q: write it as %q, e.g. %q", f.expiresBefore, expiresBeforeLayout,
				time.Now().UTC().Add(24*time.Hour).Truncate(time.Second).Format(expiresBeforeLayout))
		}
		out.ByExpiresBefore = f.expiresBefore
	}
	if len(f.selectors) > 0 {
		mode, ok := matchModes[f.matchSelectors]
		if !ok {
			return nil, usagef("-matchSelectorsOn %q: use exact, any, superset or subset", f.matchSelectors)
		}
		m := &types.SelectorMatch{Match: types.SelectorMatch_MatchBehavior(mode)}
		for _, s := range f.selectors {
			typ, value, ok := strings.Cut(s, ":")
			if !ok || typ == "" || value == "" {
				return nil, usagef("-selector %q: write it as type:value, e.g. x509pop:subject:cn:node-1", s)
			}
			m.Selectors = append(m.Selectors, &types.Selector{Type: typ, Value: value})
		}
		out.BySelectorMatch = m
	}
	return out, nil
}

func runAgentList(ctx context.Context, e *env, args []string) error {
	socketPath, output, filter, err := parseFiltered(e, "agent list", args, &agentFilterFlags{}, nil)
	if err != nil {
		return err
	}
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := listAgents(ctx, agentv1.NewAgentClient(conn), filter)
		if err != nil {
			return err
		}
		if output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		if len(resp.GetAgents()) == 0 {
			e.printf("No attested agents found\n")
			return nil
		}
		e.printf("Found %d attested %s:\n\n", len(resp.GetAgents()), plural(len(resp.GetAgents()), "agent", "agents"))
		for _, a := range resp.GetAgents() {
			printAgent(e.stdout, a)
		}
		return nil
	})
}

// listAgents reads every page, 1,000 agents at a time as spire-server does.
func listAgents(ctx context.Context, client agentv1.AgentClient, filter *agentv1.ListAgentsRequest_Filter) (*agentv1.ListAgentsResponse, error) {
	out := &agentv1.ListAgentsResponse{}
	var token string
	for {
		page, err := client.ListAgents(ctx, &agentv1.ListAgentsRequest{Filter: filter, PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		out.Agents = append(out.Agents, page.GetAgents()...)
		if token = page.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// printAgent prints an agent in spire-server's layout, its expiry in local
// time as spire-server prints it.
func printAgent(w io.Writer, a *types.Agent) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("SPIFFE ID         : %s\n", idString(a.GetId()))
	p("Attestation type  : %s\n", a.GetAttestationType())
	p("Expiration time   : %s\n", time.Unix(a.GetX509SvidExpiresAt(), 0))
	if a.GetBanned() {
		p("Banned            : %t\n", true)
	} else {
		p("Serial number     : %s\n", a.GetX509SvidSerialNumber())
	}
	p("Can re-attest     : %t\n", a.GetCanReattest())
	if a.GetAgentVersion() != "" {
		p("Agent version     : %s\n", a.GetAgentVersion())
	}
	p("\n")
}

func runAgentCount(ctx context.Context, e *env, args []string) error {
	socketPath, output, filter, err := parseFiltered(e, "agent count", args, &agentFilterFlags{}, nil)
	if err != nil {
		return err
	}
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := agentv1.NewAgentClient(conn).CountAgents(ctx, &agentv1.CountAgentsRequest{Filter: &agentv1.CountAgentsRequest_Filter{
			ByAttestationType: filter.GetByAttestationType(), BySelectorMatch: filter.GetBySelectorMatch(),
			ByExpiresBefore: filter.GetByExpiresBefore(), ByBanned: filter.GetByBanned(), ByCanReattest: filter.GetByCanReattest(),
		}})
		if err != nil {
			return err
		}
		if output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		n := int(resp.GetCount())
		e.printf("%d attested %s\n", n, plural(n, "agent", "agents"))
		return nil
	})
}

// agentIDFlag registers -spiffeID and returns a parser for its value.
func agentIDFlag(fs *flag.FlagSet, verb string) func() (*types.SPIFFEID, error) {
	v := fs.String("spiffeID", "", "the SPIFFE ID of the agent to "+verb+" (find it with `treaty agent list`)")
	return func() (*types.SPIFFEID, error) {
		if *v == "" {
			return nil, usagef("-spiffeID is required; find it with `treaty agent list`")
		}
		id, err := spiffeid.FromString(*v)
		if err != nil {
			return nil, usagef("-spiffeID %q: %v", *v, err)
		}
		return apiID(id), nil
	}
}

func runAgentShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "agent show")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	agentID := agentIDFlag(fs, "show")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	id, err := agentID()
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		a, err := agentv1.NewAgentClient(conn).GetAgent(ctx, &agentv1.GetAgentRequest{Id: id})
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, a)
		}
		e.printf("Found an attested agent given its SPIFFE ID\n\n")
		printAgent(e.stdout, a)
		for _, s := range a.GetSelectors() {
			e.printf("Selectors         : %s:%s\n", s.GetType(), s.GetValue())
		}
		return nil
	})
}

func runAgentBan(ctx context.Context, e *env, args []string) error {
	return runAgentChange(ctx, e, "ban", args, func(ctx context.Context, c agentv1.AgentClient, id *types.SPIFFEID) (proto.Message, error) {
		return c.BanAgent(ctx, &agentv1.BanAgentRequest{Id: id})
	}, "Agent banned successfully")
}

func runAgentEvict(ctx context.Context, e *env, args []string) error {
	return runAgentChange(ctx, e, "evict", args, func(ctx context.Context, c agentv1.AgentClient, id *types.SPIFFEID) (proto.Message, error) {
		return c.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: id})
	}, "Agent evicted successfully")
}

// runAgentChange runs ban or evict: one call on one agent, then
// spire-server's line or its JSON ({}).
func runAgentChange(ctx context.Context, e *env, verb string, args []string,
	call func(context.Context, agentv1.AgentClient, *types.SPIFFEID) (proto.Message, error), done string,
) error {
	fs := newFlags(e, "agent "+verb)
	socketPath, output := socketFlag(fs), outputFlag(fs)
	agentID := agentIDFlag(fs, verb)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	id, err := agentID()
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := call(ctx, agentv1.NewAgentClient(conn), id)
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		e.printf("%s\n", done)
		return nil
	})
}

// expiredAgent is one line of agent purge's result, in spire-server's JSON.
type expiredAgent struct {
	AgentID string `json:"agent_id"`
	Deleted bool   `json:"deleted"`
	Error   string `json:"error,omitempty"`
}

func runAgentPurge(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "agent purge")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	expiredFor := fs.Duration("expiredFor", 30*24*time.Hour, "how long ago an agent's SVID must have expired for it to be purged")
	dryRun := fs.Bool("dryRun", false, "print the agents that would be purged, and purge none")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := agentv1.NewAgentClient(conn)
		// Agents that cannot re-attest (join_token) are never purged: once
		// evicted they could not come back, as in spire-server.
		resp, err := client.ListAgents(ctx, &agentv1.ListAgentsRequest{
			Filter:     &agentv1.ListAgentsRequest_Filter{ByCanReattest: wrapperspb.Bool(true)},
			OutputMask: &types.AgentMask{X509SvidExpiresAt: true},
		})
		if err != nil {
			return fmt.Errorf("failed to list agents: %w", err)
		}
		expired := []expiredAgent{}
		for _, a := range resp.GetAgents() {
			if time.Since(time.Unix(a.GetX509SvidExpiresAt(), 0)) <= *expiredFor {
				continue
			}
			r := expiredAgent{AgentID: idString(a.GetId())}
			if !*dryRun {
				if _, err := client.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: a.GetId()}); err != nil {
					r.Error = err.Error()
				} else {
					r.Deleted = true
				}
			}
			expired = append(expired, r)
		}
		if *output == outputJSON {
			return printPurgeJSON(e.stdout, expired)
		}
		printPurge(e, expired, *dryRun)
		return nil
	})
}

func printPurgeJSON(w io.Writer, expired []expiredAgent) error {
	raw, err := json.Marshal(struct {
		Agents []expiredAgent `json:"expired_agents"`
	}{expired})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(raw))
	return err
}

// printPurge prints purge's result in spire-server's layout.
func printPurge(e *env, expired []expiredAgent, dryRun bool) {
	if len(expired) == 0 {
		e.printf("No agents to purge.\n")
		return
	}
	e.printf("Found %d expired %s\n\n", len(expired), plural(len(expired), "agent", "agents"))
	if dryRun {
		e.printf("\nAgents that can be purged:\n")
		for _, r := range expired {
			e.printf("SPIFFE ID         : %s\n", r.AgentID)
		}
		return
	}
	var purged, failed []expiredAgent
	for _, r := range expired {
		if r.Deleted {
			purged = append(purged, r)
		} else {
			failed = append(failed, r)
		}
	}
	if len(purged) > 0 {
		e.printf("Agents purged:\n")
		for _, r := range purged {
			e.printf("SPIFFE ID         : %s\n", r.AgentID)
		}
	}
	if len(failed) > 0 {
		e.printf("Agents not purged:\n")
		for _, r := range failed {
			e.printf("SPIFFE ID         : %s\n", r.AgentID)
			e.printf("Error             : %s\n", r.Error)
		}
	}
}
