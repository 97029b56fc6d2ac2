package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/profile"
)

func federationCommands() []command {
	return []command{
		{"federation create", "create a federation relationship with a partner trust domain", runFederationWrite(true)},
		{"federation update", "change a federation relationship", runFederationWrite(false)},
		{"federation list", "list federation relationships", runFederationList},
		{"federation show", "show one federation relationship", runFederationShow},
		{"federation delete", "delete a federation relationship (the partner's bundle stays)", runFederationDelete},
		{"federation refresh", "fetch a partner's bundle now", runFederationRefresh},
		{"federation status", "freshness of every partner's bundle", runFederationStatus},
	}
}

// relationshipFlags are create's and update's flags, spelled as
// spire-server spells them.
type relationshipFlags struct {
	trustDomain, url, profile, endpointID, bundlePath, bundleFormat, data string
}

func (f *relationshipFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.trustDomain, "trustDomain", "", "the partner's trust domain, e.g. partner.example")
	fs.StringVar(&f.url, "bundleEndpointURL", "", "the partner's bundle endpoint, e.g. https://spire.partner.example:8443")
	fs.StringVar(&f.profile, "bundleEndpointProfile", "", "https_web or https_spiffe")
	fs.StringVar(&f.endpointID, "endpointSpiffeID", "", "SPIFFE ID the endpoint presents (https_spiffe), e.g. spiffe://partner.example/spire/server")
	fs.StringVar(&f.bundlePath, "trustDomainBundlePath", "", "the partner's bundle, obtained out of band (bootstrap)")
	fs.StringVar(&f.bundleFormat, "trustDomainBundleFormat", formatPEM, "format of -trustDomainBundlePath: pem or spiffe")
	fs.StringVar(&f.data, "data", "", `JSON file of relationships ({"federationRelationships": [...]}); "-" reads standard input`)
}

// dataFile is spire-server's -data format.
type dataFile struct {
	FederationRelationships []dataRelationship `json:"federationRelationships"`
}

type dataRelationship struct {
	TrustDomain             string `json:"trustDomain"`
	BundleEndpointURL       string `json:"bundleEndpointURL"`
	BundleEndpointProfile   string `json:"bundleEndpointProfile"`
	EndpointSPIFFEID        string `json:"endpointSPIFFEID"`
	TrustDomainBundle       string `json:"trustDomainBundle"`
	TrustDomainBundlePath   string `json:"trustDomainBundlePath"`
	TrustDomainBundleFormat string `json:"trustDomainBundleFormat"`
}

// relationships builds the API relationships from the flags or -data.
func (f *relationshipFlags) relationships(e *env) ([]*types.FederationRelationship, error) {
	if f.data == "" {
		if f.trustDomain == "" || f.url == "" || f.profile == "" {
			return nil, usagef("-trustDomain, -bundleEndpointURL and -bundleEndpointProfile are required (or -data FILE)")
		}
		rel, err := buildRelationship(e, dataRelationship{
			TrustDomain: f.trustDomain, BundleEndpointURL: f.url, BundleEndpointProfile: f.profile,
			EndpointSPIFFEID: f.endpointID, TrustDomainBundlePath: f.bundlePath, TrustDomainBundleFormat: f.bundleFormat,
		})
		if err != nil {
			return nil, err
		}
		return []*types.FederationRelationship{rel}, nil
	}
	return f.fromData(e)
}

func (f *relationshipFlags) fromData(e *env) ([]*types.FederationRelationship, error) {
	raw, err := readInput(e, f.data)
	if err != nil {
		return nil, err
	}
	var data dataFile
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&data); err != nil {
		return nil, fmt.Errorf("-data %s: %w (expected {\"federationRelationships\": [{\"trustDomain\": ..., \"bundleEndpointURL\": ..., \"bundleEndpointProfile\": ...}]})", f.data, err)
	}
	var out []*types.FederationRelationship
	for i, d := range data.FederationRelationships {
		if d.TrustDomainBundleFormat == "" {
			d.TrustDomainBundleFormat = formatPEM
		}
		rel, err := buildRelationship(e, d)
		if err != nil {
			return nil, fmt.Errorf("-data %s: federationRelationships[%d]: %w", f.data, i, err)
		}
		out = append(out, rel)
	}
	return out, nil
}

func readInput(e *env, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(e.stdin, 16<<20))
	}
	return os.ReadFile(path)
}

func buildRelationship(e *env, d dataRelationship) (*types.FederationRelationship, error) {
	td, err := trustDomainArg("trustDomain", d.TrustDomain)
	if err != nil {
		return nil, err
	}
	rel := &types.FederationRelationship{TrustDomain: td.Name(), BundleEndpointUrl: d.BundleEndpointURL}
	switch profile.Name(d.BundleEndpointProfile) {
	case profile.HTTPSWeb:
		if d.EndpointSPIFFEID != "" {
			return nil, usagef("-endpointSpiffeID is only used with -bundleEndpointProfile https_spiffe")
		}
		rel.BundleEndpointProfile = &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
	case profile.HTTPSSPIFFE:
		if d.EndpointSPIFFEID == "" {
			return nil, usagef("-bundleEndpointProfile https_spiffe needs -endpointSpiffeID, e.g. spiffe://%s/spire/server", td.Name())
		}
		if id, err := spiffeid.FromString(d.EndpointSPIFFEID); err == nil {
			if err := profile.CheckEndpointSPIFFEID(td, id); err != nil {
				return nil, usagef("-endpointSpiffeID %v", err)
			}
		}
		rel.BundleEndpointProfile = &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: d.EndpointSPIFFEID}}
	default:
		return nil, usagef("-bundleEndpointProfile %q: use https_web or https_spiffe", d.BundleEndpointProfile)
	}
	if err := checkChoice("trustDomainBundleFormat", d.TrustDomainBundleFormat, formatPEM, formatSPIFFE); err != nil {
		return nil, err
	}
	if d.TrustDomainBundlePath != "" || d.TrustDomainBundle != "" {
		b, err := bootstrapBundle(e, td.Name(), d)
		if err != nil {
			return nil, err
		}
		rel.TrustDomainBundle = b
	}
	return rel, nil
}

// bootstrapBundle reads the bootstrap bundle of d, inline or from its
// path, and checks it locally first.
func bootstrapBundle(e *env, td string, d dataRelationship) (*types.Bundle, error) {
	parsed, err := trustDomainArg("trustDomain", td)
	if err != nil {
		return nil, err
	}
	source := e
	if d.TrustDomainBundle != "" {
		source = &env{stdout: e.stdout, stderr: e.stderr, stdin: strings.NewReader(d.TrustDomainBundle)}
	}
	b, err := readBundleInput(source, parsed, d.TrustDomainBundlePath, d.TrustDomainBundleFormat)
	if err != nil {
		return nil, err
	}
	return spiffeToAPI(b), nil
}

func runFederationWrite(create bool) func(context.Context, *env, []string) error {
	verb := "update"
	if create {
		verb = "create"
	}
	return func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, "federation "+verb)
		socketPath, output := socketFlag(fs), outputFlag(fs)
		var f relationshipFlags
		f.register(fs)
		if err := parseOutput(fs, args, output); err != nil {
			return err
		}
		rels, err := f.relationships(e)
		if err != nil {
			return err
		}
		return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
			return writeRelationships(ctx, e, trustdomainv1.NewTrustDomainClient(conn), rels, create, *output)
		})
	}
}

// result is what both batch responses have per relationship.
type result interface {
	GetStatus() *types.Status
	GetFederationRelationship() *types.FederationRelationship
}

func writeRelationships(ctx context.Context, e *env, client trustdomainv1.TrustDomainClient, rels []*types.FederationRelationship, create bool, output string) error {
	var results []result
	var resp proto.Message
	if create {
		r, err := client.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{FederationRelationships: rels})
		if err != nil {
			return err
		}
		for _, x := range r.GetResults() {
			results = append(results, x)
		}
		resp = r
	} else {
		r, err := client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{FederationRelationships: rels})
		if err != nil {
			return err
		}
		for _, x := range r.GetResults() {
			results = append(results, x)
		}
		resp = r
	}
	if output == outputJSON {
		return printJSON(e.stdout, resp)
	}
	return printWriteResults(e, results, create)
}

// printWriteResults prints what was written as spire-server does (a blank
// line, then the relationship) and returns every failure.
func printWriteResults(e *env, results []result, create bool) error {
	verb := "update"
	if create {
		verb = "create"
	}
	var failed []string
	for _, r := range results {
		if err := resultError(r.GetStatus()); err != nil {
			failed = append(failed, fmt.Sprintf("could not %s the federation relationship: %v", verb, err))
			continue
		}
		e.printf("\n")
		printRelationship(e, r.GetFederationRelationship())
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "\n"))
	}
	return nil
}

func printRelationship(e *env, r *types.FederationRelationship) {
	e.printf("Trust domain              : %s\n", r.GetTrustDomain())
	e.printf("Bundle endpoint URL       : %s\n", r.GetBundleEndpointUrl())
	switch p := r.GetBundleEndpointProfile().(type) {
	case *types.FederationRelationship_HttpsWeb:
		e.printf("Bundle endpoint profile   : https_web\n")
	case *types.FederationRelationship_HttpsSpiffe:
		e.printf("Bundle endpoint profile   : https_spiffe\n")
		e.printf("Endpoint SPIFFE ID        : %s\n", p.HttpsSpiffe.GetEndpointSpiffeId())
	}
}

func runFederationList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "federation list")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := trustdomainv1.NewTrustDomainClient(conn).ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{})
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		rels := resp.GetFederationRelationships()
		noun := "relationships"
		if len(rels) == 1 {
			noun = "relationship"
		}
		e.printf("Found %d federation %s\n", len(rels), noun)
		for _, r := range rels {
			e.printf("\n")
			printRelationship(e, r)
		}
		return nil
	})
}

func runFederationShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "federation show")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	trustDomain := fs.String("trustDomain", "", "the partner's trust domain (required)")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	if *trustDomain == "" {
		return usagef("-trustDomain is required")
	}
	td, err := trustDomainArg("trustDomain", *trustDomain)
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		r, err := trustdomainv1.NewTrustDomainClient(conn).GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: td.Name()})
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, r)
		}
		e.printf("Found a federation relationship with trust domain %s:\n\n", td.Name())
		printRelationship(e, r)
		return nil
	})
}

// parseIDFlags parses the -socketPath and -id flags of delete and refresh.
func parseIDFlags(e *env, name string, args []string) (string, spiffeid.TrustDomain, error) {
	fs := newFlags(e, name)
	socketPath := socketFlag(fs)
	id := fs.String("id", "", "the partner's trust domain, e.g. partner.example (required)")
	if err := parse(fs, args); err != nil {
		return "", spiffeid.TrustDomain{}, err
	}
	if *id == "" {
		return "", spiffeid.TrustDomain{}, usagef("-id is required")
	}
	td, err := trustDomainArg("id", *id)
	return *socketPath, td, err
}

func runFederationDelete(ctx context.Context, e *env, args []string) error {
	socketPath, td, err := parseIDFlags(e, "federation delete", args)
	if err != nil {
		return err
	}
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := trustdomainv1.NewTrustDomainClient(conn).BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{TrustDomains: []string{td.Name()}})
		if err != nil {
			return err
		}
		if err := resultError(resp.GetResults()[0].GetStatus()); err != nil {
			return err
		}
		e.printf("federation relationship deleted.\n")
		return nil
	})
}

func runFederationRefresh(ctx context.Context, e *env, args []string) error {
	socketPath, td, err := parseIDFlags(e, "federation refresh", args)
	if err != nil {
		return err
	}
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		if _, err := trustdomainv1.NewTrustDomainClient(conn).RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: td.Name()}); err != nil {
			return err
		}
		e.printf("Bundle refreshed\n")
		return nil
	})
}

func runFederationStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "federation status")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		raw := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminwire.StatusMethod, &emptypb.Empty{}, raw); err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, raw)
		}
		var resp adminwire.StatusResponse
		if err := adminwire.FromStruct(raw, &resp); err != nil {
			return err
		}
		return printStatus(e, resp, time.Now())
	})
}

func printStatus(e *env, resp adminwire.StatusResponse, now time.Time) error {
	if exp := resp.BundleEndpointCertificateExpiry; exp != "" {
		e.printf("Bundle endpoint certificate expires %s\n\n", exp)
	}
	if len(resp.Relationships) == 0 {
		e.printf("No federation relationships. Create one with `treaty federation create`.\n")
		printGaps(e, resp.FederationGaps)
		printSignedBundles(e, resp.SignedBundles)
		return nil
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	// Replicas sharing a database poll each partner from one of them.
	replicas := slices.ContainsFunc(resp.Relationships, func(r adminwire.RelationshipStatus) bool { return r.PolledBy != "" })
	header := "TRUST DOMAIN\tSTATE\tLAST SUCCESS\tFAILURES\tSEQUENCE\tEARLIEST EXPIRY\tENDPOINT"
	if replicas {
		header += "\tPOLLED BY"
	}
	fmt.Fprintln(w, header)
	var notes []string
	for _, r := range resp.Relationships {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s", r.TrustDomain, r.State,
			ago(r.LastSuccess, now), r.ConsecutiveFailures, r.Sequence, orDash(r.EarliestExpiry), r.Endpoint)
		if replicas {
			fmt.Fprintf(w, "\t%s", orDash(r.PolledBy))
		}
		fmt.Fprintln(w)
		if file, ok := strings.CutPrefix(r.ManagedBy, "onboarding:"); ok {
			notes = append(notes, fmt.Sprintf("%s: from the onboarding file %s (change the file, not the relationship)", r.TrustDomain, file))
		}
		if r.LastError != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.TrustDomain, r.LastError))
		}
		for _, warn := range r.Warnings {
			notes = append(notes, fmt.Sprintf("%s: warning: %s", r.TrustDomain, warn))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		e.printf("\n%s\n", n)
	}
	printGaps(e, resp.FederationGaps)
	printNextAuthority(e, "authority", resp.NextAuthority, now)
	printNextAuthority(e, "JWT key", resp.NextJWTAuthority, now)
	printSignedBundles(e, resp.SignedBundles)
	return nil
}

// printNextAuthority says which partners with receipts hold the prepared
// authority (what names its kind), naming those that do not.
func printNextAuthority(e *env, what string, next *adminwire.NextAuthority, now time.Time) {
	if next == nil || len(next.Partners) == 0 {
		return
	}
	have := 0
	var lack []string
	for _, p := range next.Partners {
		if p.HasNextAuthority {
			have++
			continue
		}
		lack = append(lack, fmt.Sprintf("%s last fetched sequence %d, %s", p.TrustDomain, p.Sequence, ago(p.FetchedAt, now)))
	}
	line := fmt.Sprintf("\nour next %s %s (sequence %d): %d/%d partners have it", what, next.AuthorityID, next.Sequence, have, len(next.Partners))
	if len(lack) > 0 {
		line += "; " + strings.Join(lack, "; ")
	}
	e.printf("%s\n", line)
}

// printGaps lists entries that federate with trust domains without a bundle.
func printGaps(e *env, gaps []adminwire.FederationGap) {
	if len(gaps) == 0 {
		return
	}
	e.printf("\nEntries federating with a trust domain we hold no bundle for (their SVIDs are served;\n" +
		"peers from that trust domain cannot be verified until a bundle arrives: create a relationship or run treaty bundle set):\n")
	for _, g := range gaps {
		e.printf("  %s (entry %s) -> %s\n", g.SPIFFEID, g.EntryID, g.TrustDomain)
	}
}

func ago(rfc3339 string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
