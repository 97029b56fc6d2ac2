package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func entryCommands() []command {
	return []command{
		{"entry create", "create registration entries: which workloads get which SPIFFE ID", runEntryCreate},
		{"entry update", "replace a registration entry", runEntryUpdate},
		{"entry show", "show registration entries, optionally filtered", runEntryShow},
		{"entry delete", "delete registration entries", runEntryDelete},
		{"entry count", "count registration entries", runEntryCount},
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// entryFlags are the flags that describe an entry, as spire-server spells them.
type entryFlags struct {
	entryID, parentID, spiffeID, hint, data string
	x509TTL, jwtTTL                         int
	expiry                                  int64
	selectors, federatesWith, dns           listFlag
	admin, downstream, storeSVID, node      bool
}

func (f *entryFlags) register(fs *flag.FlagSet, create bool) {
	fs.StringVar(&f.entryID, "entryID", "", "the entry's ID (create: optional, generated if empty; update: required)")
	fs.StringVar(&f.parentID, "parentID", "", "the entry's parent ID (default: spiffe://<trust domain>/spire/server; treaty serves entries to workloads on its own host whatever their parent)")
	fs.StringVar(&f.spiffeID, "spiffeID", "", "the SPIFFE ID workloads matching this entry get")
	fs.IntVar(&f.x509TTL, "x509SVIDTTL", 0, "lifetime of X509-SVIDs for this entry, in seconds (default: the server's ca.x509_svid_ttl)")
	fs.IntVar(&f.jwtTTL, "jwtSVIDTTL", 0, "lifetime of JWT-SVIDs for this entry, in seconds (default: the server's ca.jwt_svid_ttl)")
	fs.StringVar(&f.data, "data", "", "a JSON file of entries ({\"entries\": [...]} as spire-server takes it); - reads standard input")
	fs.Var(&f.selectors, "selector", "a type:value selector the workload must have, e.g. unix:uid:1000 (repeatable)")
	fs.Var(&f.federatesWith, "federatesWith", "a trust domain whose bundle the workload receives, e.g. spiffe://beta.test, or * for all (repeatable)")
	fs.BoolVar(&f.admin, "admin", false, "grant the SPIFFE ID admin rights (recorded for SPIRE compatibility)")
	fs.BoolVar(&f.downstream, "downstream", false, "the entry describes a downstream server (recorded for SPIRE compatibility)")
	fs.BoolVar(&f.storeSVID, "storeSVID", false, "refused by treaty, which has no SVID stores (the flag exists so SPIRE scripts get a clear error)")
	fs.Int64Var(&f.expiry, "entryExpiry", 0, "when the entry stops being served, in seconds since the epoch")
	fs.Var(&f.dns, "dns", "a DNS name to put in the X509-SVID (repeatable)")
	fs.StringVar(&f.hint, "hint", "", "a hint that tells apart several SVIDs of one workload")
	if create {
		fs.BoolVar(&f.node, "node", false, "accepted for SPIRE compatibility: the parent ID becomes the server's ID")
	}
}

// entries builds the API entries from the flags or the -data file.
func (f *entryFlags) entries(e *env, local spiffeid.TrustDomain, needID bool) ([]*types.Entry, error) {
	if f.data != "" {
		return readEntryData(e, f.data)
	}
	if f.spiffeID == "" {
		return nil, usagef("-spiffeID is required")
	}
	if needID && f.entryID == "" {
		return nil, usagef("-entryID is required; find it with `treaty entry show`")
	}
	if len(f.selectors) == 0 {
		return nil, usagef("at least one -selector is required, e.g. -selector unix:uid:1000")
	}
	if f.x509TTL < 0 || f.jwtTTL < 0 {
		return nil, usagef("TTLs cannot be negative")
	}
	id, err := spiffeid.FromString(f.spiffeID)
	if err != nil {
		return nil, usagef("-spiffeID %q: %v", f.spiffeID, err)
	}
	parent := spiffeid.RequireFromPath(local, "/spire/server")
	if f.parentID != "" && !f.node {
		if parent, err = spiffeid.FromString(f.parentID); err != nil {
			return nil, usagef("-parentID %q: %v", f.parentID, err)
		}
	}
	out := &types.Entry{
		Id: f.entryID, SpiffeId: apiID(id), ParentId: apiID(parent), X509SvidTtl: int32(f.x509TTL), JwtSvidTtl: int32(f.jwtTTL), //nolint:gosec // flag values
		FederatesWith: f.federatesWith, Admin: f.admin, Downstream: f.downstream, StoreSvid: f.storeSVID,
		ExpiresAt: f.expiry, DnsNames: f.dns, Hint: f.hint,
	}
	for _, s := range f.selectors {
		typ, value, ok := strings.Cut(s, ":")
		if !ok || typ == "" || value == "" {
			return nil, usagef("-selector %q: write it as type:value, e.g. unix:uid:1000", s)
		}
		out.Selectors = append(out.Selectors, &types.Selector{Type: typ, Value: value})
	}
	return []*types.Entry{out}, nil
}

func apiID(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// entryData is spire-server's registration JSON.
type entryData struct {
	Entries []struct {
		Selectors []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"selectors"`
		ParentID      string   `json:"parent_id"`
		SPIFFEID      string   `json:"spiffe_id"`
		X509SVIDTTL   int32    `json:"x509_svid_ttl"`
		JWTSVIDTTL    int32    `json:"jwt_svid_ttl"`
		FederatesWith []string `json:"federates_with"`
		EntryID       string   `json:"entry_id"`
		Admin         bool     `json:"admin"`
		Downstream    bool     `json:"downstream"`
		EntryExpiry   int64    `json:"entryExpiry"`
		DNSNames      []string `json:"dns_names"`
		Hint          string   `json:"hint"`
	} `json:"entries"`
}

func readEntryData(e *env, path string) ([]*types.Entry, error) {
	raw, err := readInput(e, path)
	if err != nil {
		return nil, err
	}
	var data entryData
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&data); err != nil {
		return nil, fmt.Errorf("read entries from %s: %w (expected {\"entries\": [{\"spiffe_id\": ..., \"selectors\": [{\"type\": \"unix\", \"value\": \"uid:1000\"}]}]})", path, err)
	}
	var out []*types.Entry
	for i, d := range data.Entries {
		id, err := spiffeid.FromString(d.SPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("entries[%d].spiffe_id %q: %w", i, d.SPIFFEID, err)
		}
		entry := &types.Entry{Id: d.EntryID, SpiffeId: apiID(id), X509SvidTtl: d.X509SVIDTTL, JwtSvidTtl: d.JWTSVIDTTL,
			FederatesWith: d.FederatesWith, Admin: d.Admin, Downstream: d.Downstream, ExpiresAt: d.EntryExpiry, DnsNames: d.DNSNames, Hint: d.Hint}
		if d.ParentID != "" {
			parent, err := spiffeid.FromString(d.ParentID)
			if err != nil {
				return nil, fmt.Errorf("entries[%d].parent_id %q: %w", i, d.ParentID, err)
			}
			entry.ParentId = apiID(parent)
		}
		for _, s := range d.Selectors {
			entry.Selectors = append(entry.Selectors, &types.Selector{Type: s.Type, Value: s.Value})
		}
		out = append(out, entry)
	}
	return out, nil
}

// localTrustDomain asks the server for its trust domain.
func localTrustDomain(ctx context.Context, conn *grpc.ClientConn) (spiffeid.TrustDomain, error) {
	b, err := bundlev1.NewBundleClient(conn).GetBundle(ctx, &bundlev1.GetBundleRequest{OutputMask: &types.BundleMask{}})
	if err != nil {
		return spiffeid.TrustDomain{}, err
	}
	return spiffeid.TrustDomainFromString(b.GetTrustDomain())
}

func runEntryCreate(ctx context.Context, e *env, args []string) error {
	return runEntryWrite(ctx, e, "entry create", args, false)
}

func runEntryUpdate(ctx context.Context, e *env, args []string) error {
	return runEntryWrite(ctx, e, "entry update", args, true)
}

// runEntryWrite creates or updates entries and prints them as
// spire-server does; failures go to stderr with their code.
func runEntryWrite(ctx context.Context, e *env, name string, args []string, update bool) error {
	fs := newFlags(e, name)
	socketPath, output := socketFlag(fs), outputFlag(fs)
	var f entryFlags
	f.register(fs, !update)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	verb := "create"
	if update {
		verb = "update"
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		local, err := localTrustDomain(ctx, conn)
		if err != nil {
			return err
		}
		entries, err := f.entries(e, local, update)
		if err != nil {
			return err
		}
		client := entryv1.NewEntryClient(conn)
		var results []entryResult
		var resp proto.Message
		if update {
			r, err := client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: entries})
			if err != nil {
				return err
			}
			for i, res := range r.GetResults() {
				results = append(results, entryResult{res.GetStatus(), res.GetEntry(), entries[i]})
			}
			resp = r
		} else {
			r, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
			if err != nil {
				return err
			}
			for i, res := range r.GetResults() {
				results = append(results, entryResult{res.GetStatus(), res.GetEntry(), entries[i]})
				if res.GetStatus().GetCode() != int32(codes.OK) {
					res.Entry = entries[i] // what was asked, as spire-server shows it
				}
			}
			resp = r
		}
		warnMissingBundles(ctx, e, conn, results)
		if *output == outputJSON {
			if err := printJSON(e.stdout, resp); err != nil {
				return err
			}
			return failedResults(results, verb)
		}
		return printEntryResults(e, results, verb)
	})
}

type entryResult struct {
	status    *types.Status
	entry     *types.Entry
	requested *types.Entry
}

func failedResults(results []entryResult, verb string) error {
	for _, r := range results {
		if r.status.GetCode() != int32(codes.OK) {
			return fmt.Errorf("failed to %s one or more entries", verb)
		}
	}
	return nil
}

func printEntryResults(e *env, results []entryResult, verb string) error {
	for _, r := range results {
		if r.status.GetCode() == int32(codes.OK) {
			printEntry(e.stdout, r.entry)
		}
	}
	for _, r := range results {
		if r.status.GetCode() != int32(codes.OK) {
			fmt.Fprintf(e.stderr, "Failed to %s the following entry (code: %s, msg: %q):\n", verb, codes.Code(r.status.GetCode()), r.status.GetMessage()) //nolint:gosec // gRPC codes are small
			printEntry(e.stderr, r.requested)
		}
	}
	return failedResults(results, verb)
}

// warnMissingBundles says which federated trust domains have no bundle on
// the server yet: the SVID is issued regardless, but peers from there
// cannot be verified until a bundle arrives.
func warnMissingBundles(ctx context.Context, e *env, conn *grpc.ClientConn, results []entryResult) {
	client := bundlev1.NewBundleClient(conn)
	warned := map[string]bool{}
	for _, r := range results {
		if r.status.GetCode() != int32(codes.OK) {
			continue
		}
		for _, name := range r.entry.GetFederatesWith() {
			if name == "*" || warned[name] {
				continue
			}
			_, err := client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: name})
			if status.Code(err) != codes.NotFound {
				continue
			}
			warned[name] = true
			e.warnf("the server holds no bundle for %s yet: workloads of this entry get their SVID now, but cannot verify "+
				"peers from %s until a bundle arrives. Create a relationship (treaty federation create -trustDomain %s ...) "+
				"or import one (treaty bundle set -id spiffe://%s -path bundle.json -format spiffe)", name, name, name, name)
		}
	}
}

// printEntry prints an entry in spire-server's layout.
func printEntry(w io.Writer, en *types.Entry) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	id := en.GetId()
	if id == "" {
		id = "(none)"
	}
	p("Entry ID                : %s\n", id)
	p("SPIFFE ID               : %s\n", idString(en.GetSpiffeId()))
	p("Parent ID               : %s\n", idString(en.GetParentId()))
	p("Revision                : %d\n", en.GetRevisionNumber())
	if en.GetDownstream() {
		p("Downstream              : %t\n", true)
	}
	printTTL(p, "X509-SVID TTL           ", en.GetX509SvidTtl())
	printTTL(p, "JWT-SVID TTL            ", en.GetJwtSvidTtl())
	if en.GetExpiresAt() != 0 {
		p("Expiration time         : %s\n", time.Unix(en.GetExpiresAt(), 0).UTC())
	}
	for _, s := range en.GetSelectors() {
		p("Selector                : %s:%s\n", s.GetType(), s.GetValue())
	}
	for _, td := range en.GetFederatesWith() {
		p("FederatesWith           : %s\n", td)
	}
	for _, dns := range en.GetDnsNames() {
		p("DNS name                : %s\n", dns)
	}
	if en.GetAdmin() {
		p("Admin                   : %t\n", true)
	}
	if en.GetStoreSvid() {
		p("StoreSvid               : %t\n", true)
	}
	if en.GetHint() != "" {
		p("Hint                    : %s\n", en.GetHint())
	}
	p("\n")
}

func printTTL(p func(string, ...any), label string, ttl int32) {
	if ttl == 0 {
		p("%s: default\n", label)
		return
	}
	p("%s: %d\n", label, ttl)
}

func idString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.GetTrustDomain() + id.GetPath()
}

// filterFlags are show's and count's filters.
type filterFlags struct {
	parentID, spiffeID, hint, matchSelectors, matchFederates string
	downstream                                               bool
	selectors, federatesWith                                 listFlag
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.parentID, "parentID", "", "only entries with this parent ID")
	fs.StringVar(&f.spiffeID, "spiffeID", "", "only entries with this SPIFFE ID")
	fs.StringVar(&f.hint, "hint", "", "only entries with this hint")
	fs.BoolVar(&f.downstream, "downstream", false, "only downstream entries")
	fs.Var(&f.selectors, "selector", "filter by type:value selector (repeatable)")
	fs.Var(&f.federatesWith, "federatesWith", "filter by federated trust domain (repeatable)")
	fs.StringVar(&f.matchSelectors, "matchSelectorsOn", "superset", "how -selector matches: exact, any, superset or subset")
	fs.StringVar(&f.matchFederates, "matchFederatesWithOn", "superset", "how -federatesWith matches: exact, any, superset or subset")
}

var matchModes = map[string]int32{"exact": 0, "subset": 1, "superset": 2, "any": 3}

func (f *filterFlags) filter() (*entryv1.ListEntriesRequest_Filter, error) {
	out := &entryv1.ListEntriesRequest_Filter{}
	for flagName, v := range map[string]string{"parentID": f.parentID, "spiffeID": f.spiffeID} {
		if v == "" {
			continue
		}
		id, err := spiffeid.FromString(v)
		if err != nil {
			return nil, usagef("-%s %q: %v", flagName, v, err)
		}
		if flagName == "parentID" {
			out.ByParentId = apiID(id)
		} else {
			out.BySpiffeId = apiID(id)
		}
	}
	if f.hint != "" {
		out.ByHint = wrapperspb.String(f.hint)
	}
	if f.downstream {
		out.ByDownstream = wrapperspb.Bool(true)
	}
	if len(f.selectors) > 0 {
		mode, ok := matchModes[f.matchSelectors]
		if !ok {
			return nil, usagef("-matchSelectorsOn %q: use exact, any, superset or subset", f.matchSelectors)
		}
		m := &types.SelectorMatch{Match: types.SelectorMatch_MatchBehavior(mode)}
		for _, s := range f.selectors {
			typ, value, ok := strings.Cut(s, ":")
			if !ok {
				return nil, usagef("-selector %q: write it as type:value", s)
			}
			m.Selectors = append(m.Selectors, &types.Selector{Type: typ, Value: value})
		}
		out.BySelectors = m
	}
	if len(f.federatesWith) > 0 {
		mode, ok := matchModes[f.matchFederates]
		if !ok {
			return nil, usagef("-matchFederatesWithOn %q: use exact, any, superset or subset", f.matchFederates)
		}
		out.ByFederatesWith = &types.FederatesWithMatch{TrustDomains: f.federatesWith, Match: types.FederatesWithMatch_MatchBehavior(mode)}
	}
	return out, nil
}

func runEntryShow(ctx context.Context, e *env, args []string) error {
	var entryID *string
	socketPath, output, filter, err := parseFiltered(e, "entry show", args, &filterFlags{}, func(fs *flag.FlagSet) {
		entryID = fs.String("entryID", "", "show only the entry with this ID")
	})
	if err != nil {
		return err
	}
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := entryv1.NewEntryClient(conn)
		resp := &entryv1.ListEntriesResponse{}
		if *entryID != "" {
			en, err := client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: *entryID})
			if err != nil {
				return fmt.Errorf("error fetching entry ID %s: %w", *entryID, err)
			}
			resp.Entries = []*types.Entry{en}
		} else {
			var token string
			for {
				page, err := client.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: filter, PageSize: 1000, PageToken: token})
				if err != nil {
					return err
				}
				resp.Entries = append(resp.Entries, page.GetEntries()...)
				if token = page.GetNextPageToken(); token == "" {
					break
				}
			}
		}
		sortEntries(resp.Entries)
		if output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		noun := "entries"
		if len(resp.Entries) == 1 {
			noun = "entry"
		}
		e.printf("Found %d %s\n", len(resp.Entries), noun)
		for _, en := range resp.Entries {
			printEntry(e.stdout, en)
		}
		return nil
	})
}

// sortEntries orders entries as spire-server does: by SPIFFE ID, parent ID,
// then selectors.
func sortEntries(entries []*types.Entry) {
	key := func(en *types.Entry) string {
		sel := make([]string, len(en.GetSelectors()))
		for i, s := range en.GetSelectors() {
			sel[i] = s.GetType() + ":" + s.GetValue()
		}
		return idString(en.GetSpiffeId()) + "\x00" + idString(en.GetParentId()) + "\x00" + strings.Join(sel, ",")
	}
	slices.SortStableFunc(entries, func(a, b *types.Entry) int { return strings.Compare(key(a), key(b)) })
}

func runEntryCount(ctx context.Context, e *env, args []string) error {
	socketPath, output, filter, err := parseFiltered(e, "entry count", args, &filterFlags{}, nil)
	if err != nil {
		return err
	}
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := entryv1.NewEntryClient(conn).CountEntries(ctx, &entryv1.CountEntriesRequest{Filter: &entryv1.CountEntriesRequest_Filter{
			BySpiffeId: filter.GetBySpiffeId(), ByParentId: filter.GetByParentId(), BySelectors: filter.GetBySelectors(),
			ByFederatesWith: filter.GetByFederatesWith(), ByHint: filter.GetByHint(), ByDownstream: filter.GetByDownstream(),
		}})
		if err != nil {
			return err
		}
		if output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		noun := "entries"
		if resp.GetCount() == 1 {
			noun = "entry"
		}
		e.printf("%d registration %s\n", resp.GetCount(), noun)
		return nil
	})
}

func runEntryDelete(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "entry delete")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	entryID := fs.String("entryID", "", "the ID of the entry to delete")
	file := fs.String("file", "", "a JSON file {\"ids\": [...]} of entries to delete; - reads standard input")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	ids, err := deleteIDs(e, *entryID, *file)
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := entryv1.NewEntryClient(conn).BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: ids})
		if err != nil {
			return err
		}
		if *output == outputJSON {
			if err := printJSON(e.stdout, resp); err != nil {
				return err
			}
		}
		var ok, failed int
		for _, r := range resp.GetResults() {
			if r.GetStatus().GetCode() == int32(codes.OK) {
				ok++
				if *output != outputJSON {
					e.printf("Deleted entry with ID: %s\n", r.GetId())
				}
				continue
			}
			failed++
			fmt.Fprintf(e.stderr, "Failed to delete entry with ID %s (code: %s, msg: %q)\n", r.GetId(), codes.Code(r.GetStatus().GetCode()), r.GetStatus().GetMessage()) //nolint:gosec // gRPC codes are small
		}
		if *output == outputJSON {
			if failed > 0 {
				return errors.New("failed to delete one or more entries")
			}
			return nil
		}
		if ok > 0 {
			e.printf("\n\n")
		}
		if failed > 0 {
			e.printf("\n\n")
			if ok == 0 {
				e.printf("Failed to delete %d entries", failed)
			} else {
				e.printf("Deleted %d entries successfully, but failed to delete %d entries", ok, failed)
			}
			return errors.New("failed to delete one or more entries")
		}
		e.printf("Deleted %d entries successfully", ok)
		return nil
	})
}

func deleteIDs(e *env, entryID, file string) ([]string, error) {
	if file == "" {
		if entryID == "" {
			return nil, usagef("-entryID is required; find it with `treaty entry show`")
		}
		return []string{entryID}, nil
	}
	raw, err := readInput(e, file)
	if err != nil {
		return nil, err
	}
	var data struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, fmt.Errorf("read %s: %w (expected {\"ids\": [\"...\"]})", file, err)
	}
	return data.IDs, nil
}
