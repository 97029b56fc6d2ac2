package adminapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/entrywire"
)

// EntryStore keeps registration entries.
type EntryStore interface {
	CreateEntry(ctx context.Context, e datastore.Entry) (datastore.Entry, error)
	UpdateEntry(ctx context.Context, e datastore.Entry) (datastore.Entry, error)
	DeleteEntry(ctx context.Context, id string) error
	Entry(ctx context.Context, id string) (datastore.Entry, error)
	ListEntries(ctx context.Context) ([]datastore.Entry, error)
}

// entryService implements SPIRE's Entry API. Unlike SPIRE, an entry may
// federate with a trust domain the server holds no bundle for: federation
// never blocks identity, so the entry is stored and the gap logged.
type entryService struct {
	entryv1.UnimplementedEntryServer
	local   spiffeid.TrustDomain
	store   EntryStore
	bundles BundleStore
	log     *slog.Logger
}

func (s *entryService) CountEntries(ctx context.Context, req *entryv1.CountEntriesRequest) (*entryv1.CountEntriesResponse, error) {
	f := req.GetFilter()
	entries, err := s.filtered(ctx, &entryv1.ListEntriesRequest_Filter{
		BySpiffeId: f.GetBySpiffeId(), ByParentId: f.GetByParentId(), BySelectors: f.GetBySelectors(),
		ByFederatesWith: f.GetByFederatesWith(), ByHint: f.GetByHint(), ByDownstream: f.GetByDownstream(),
	})
	if err != nil {
		return nil, err
	}
	return &entryv1.CountEntriesResponse{Count: int32(len(entries))}, nil //nolint:gosec // entry counts fit
}

func (s *entryService) ListEntries(ctx context.Context, req *entryv1.ListEntriesRequest) (*entryv1.ListEntriesResponse, error) {
	entries, err := s.filtered(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		if start, err = strconv.Atoi(tok); err != nil || start < 0 || start > len(entries) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid page token %q", tok)
		}
	}
	end := len(entries)
	resp := &entryv1.ListEntriesResponse{}
	if size := int(req.GetPageSize()); size > 0 && start+size < end {
		end = start + size
		resp.NextPageToken = strconv.Itoa(end)
	}
	for _, e := range entries[start:end] {
		resp.Entries = append(resp.Entries, entrywire.ToProto(e, req.GetOutputMask()))
	}
	return resp, nil
}

func (s *entryService) filtered(ctx context.Context, f *entryv1.ListEntriesRequest_Filter) ([]datastore.Entry, error) {
	all, err := s.store.ListEntries(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list entries: %v", err)
	}
	var out []datastore.Entry
	for _, e := range all {
		ok, err := entryMatches(e, f)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// entryMatches applies a ListEntries filter to one entry.
func entryMatches(e datastore.Entry, f *entryv1.ListEntriesRequest_Filter) (bool, error) {
	if f == nil {
		return true, nil
	}
	if id := f.GetBySpiffeId(); id != nil && protoIDString(id) != e.SPIFFEID.String() {
		return false, nil
	}
	if id := f.GetByParentId(); id != nil && protoIDString(id) != e.ParentID.String() {
		return false, nil
	}
	if h := f.GetByHint(); h != nil && h.GetValue() != e.Hint {
		return false, nil
	}
	if d := f.GetByDownstream(); d != nil && d.GetValue() != e.Downstream {
		return false, nil
	}
	if m := f.GetBySelectors(); m != nil {
		want := make([]string, len(m.GetSelectors()))
		for i, sel := range m.GetSelectors() {
			want[i] = sel.GetType() + ":" + sel.GetValue()
		}
		have := make([]string, len(e.Selectors))
		for i, sel := range e.Selectors {
			have[i] = sel.Type + ":" + sel.Value
		}
		if !setMatch(have, want, int32(m.GetMatch())) {
			return false, nil
		}
	}
	if m := f.GetByFederatesWith(); m != nil {
		want := make([]string, len(m.GetTrustDomains()))
		for i, name := range m.GetTrustDomains() {
			td, err := spiffeid.TrustDomainFromString(name)
			if err != nil {
				return false, fmt.Errorf("federates-with filter %q: %w", name, err)
			}
			want[i] = td.Name()
		}
		if !setMatch(e.FederatesWith, want, int32(m.GetMatch())) {
			return false, nil
		}
	}
	return true, nil
}

// setMatch applies SPIRE's match behaviours (types.SelectorMatch and
// FederatesWithMatch share the numbering): 0 exact, 1 subset (the entry's
// set is within want), 2 superset (the entry's set contains want), 3 any.
func setMatch(have, want []string, match int32) bool {
	contains := func(outer, inner []string) bool {
		for _, v := range inner {
			if !slices.Contains(outer, v) {
				return false
			}
		}
		return true
	}
	switch match {
	case 1:
		return contains(want, have)
	case 2:
		return contains(have, want)
	case 3:
		return slices.ContainsFunc(want, func(v string) bool { return slices.Contains(have, v) })
	default:
		return contains(have, want) && contains(want, have)
	}
}

func (s *entryService) GetEntry(ctx context.Context, req *entryv1.GetEntryRequest) (*types.Entry, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "missing ID")
	}
	e, err := s.store.Entry(ctx, req.GetId())
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "entry not found")
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read entry: %v", err)
	}
	return entrywire.ToProto(e, req.GetOutputMask()), nil
}

func (s *entryService) BatchCreateEntry(ctx context.Context, req *entryv1.BatchCreateEntryRequest) (*entryv1.BatchCreateEntryResponse, error) {
	resp := &entryv1.BatchCreateEntryResponse{}
	for _, in := range req.GetEntries() {
		r := &entryv1.BatchCreateEntryResponse_Result{}
		e, st := s.entryFromProto(in)
		if err := checkEntryID(in.GetId()); st == nil && err != nil {
			st = apiStatus(codes.InvalidArgument, "invalid entry: %v", err)
		}
		if st == nil {
			created, err := s.store.CreateEntry(ctx, e)
			st, r.Entry = storeStatus(err, "create entry"), entrywire.ToProto(created, req.GetOutputMask())
			if err == nil {
				s.warnMissingBundles(ctx, created)
			} else {
				r.Entry = s.existing(ctx, e, err)
			}
		}
		r.Status = orOK(st)
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// existing returns, for an AlreadyExists failure, the entry that exists
// (SPIRE's contract), so a client can see what it collided with.
func (s *entryService) existing(ctx context.Context, e datastore.Entry, err error) *types.Entry {
	if !errors.Is(err, datastore.ErrAlreadyExists) {
		return nil
	}
	all, lerr := s.store.ListEntries(ctx)
	if lerr != nil {
		return nil
	}
	for _, have := range all {
		if have.ID == e.ID || (have.SPIFFEID == e.SPIFFEID && have.ParentID == e.ParentID && sameSelectors(have.Selectors, e.Selectors)) {
			return entrywire.ToProto(have, nil)
		}
	}
	return nil
}

func sameSelectors(a, b []datastore.Selector) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(s datastore.Selector) bool { return !slices.Contains(b, s) })
}

func (s *entryService) BatchUpdateEntry(ctx context.Context, req *entryv1.BatchUpdateEntryRequest) (*entryv1.BatchUpdateEntryResponse, error) {
	resp := &entryv1.BatchUpdateEntryResponse{}
	for _, in := range req.GetEntries() {
		r := &entryv1.BatchUpdateEntryResponse_Result{}
		e, st := s.mergeEntry(ctx, in, req.GetInputMask())
		if st == nil {
			updated, err := s.store.UpdateEntry(ctx, e)
			st = storeStatus(err, "update entry")
			if err == nil {
				r.Entry = entrywire.ToProto(updated, req.GetOutputMask())
				s.warnMissingBundles(ctx, updated)
			}
		}
		r.Status = orOK(st)
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// mergeEntry applies the fields of in selected by mask (nil: all) to the
// stored entry.
func (s *entryService) mergeEntry(ctx context.Context, in *types.Entry, mask *types.EntryMask) (datastore.Entry, *types.Status) {
	if in.GetId() == "" {
		return datastore.Entry{}, apiStatus(codes.InvalidArgument, "failed to update entry: missing ID")
	}
	old, err := s.store.Entry(ctx, in.GetId())
	if err != nil {
		return old, storeStatus(err, "update entry")
	}
	if mask == nil {
		return s.entryFromProto(in)
	}
	merged := entrywire.ToProto(old, nil)
	if mask.GetSpiffeId() {
		merged.SpiffeId = in.GetSpiffeId()
	}
	if mask.GetParentId() {
		merged.ParentId = in.GetParentId()
	}
	if mask.GetSelectors() {
		merged.Selectors = in.GetSelectors()
	}
	if mask.GetFederatesWith() {
		merged.FederatesWith = in.GetFederatesWith()
	}
	if mask.GetX509SvidTtl() {
		merged.X509SvidTtl = in.GetX509SvidTtl()
	}
	if mask.GetJwtSvidTtl() {
		merged.JwtSvidTtl = in.GetJwtSvidTtl()
	}
	if mask.GetDnsNames() {
		merged.DnsNames = in.GetDnsNames()
	}
	if mask.GetHint() {
		merged.Hint = in.GetHint()
	}
	if mask.GetAdmin() {
		merged.Admin = in.GetAdmin()
	}
	if mask.GetDownstream() {
		merged.Downstream = in.GetDownstream()
	}
	if mask.GetExpiresAt() {
		merged.ExpiresAt = in.GetExpiresAt()
	}
	return s.entryFromProto(merged)
}

func (s *entryService) BatchDeleteEntry(ctx context.Context, req *entryv1.BatchDeleteEntryRequest) (*entryv1.BatchDeleteEntryResponse, error) {
	resp := &entryv1.BatchDeleteEntryResponse{}
	for _, id := range req.GetIds() {
		st := apiStatus(codes.InvalidArgument, "failed to delete entry: missing ID")
		if id != "" {
			st = orOK(storeStatus(s.store.DeleteEntry(ctx, id), "delete entry"))
		}
		resp.Results = append(resp.Results, &entryv1.BatchDeleteEntryResponse_Result{Status: st, Id: id})
	}
	return resp, nil
}

func (s *entryService) GetAuthorizedEntries(context.Context, *entryv1.GetAuthorizedEntriesRequest) (*entryv1.GetAuthorizedEntriesResponse, error) {
	return nil, status.Error(codes.Unimplemented, "treaty has no agents: workloads get their SVIDs from treaty's own Workload API")
}

func (s *entryService) SyncAuthorizedEntries(grpc.BidiStreamingServer[entryv1.SyncAuthorizedEntriesRequest, entryv1.SyncAuthorizedEntriesResponse]) error {
	return status.Error(codes.Unimplemented, "treaty has no agents: workloads get their SVIDs from treaty's own Workload API")
}

// warnMissingBundles logs, once per write, the trust domains the entry
// federates with that have no bundle yet.
func (s *entryService) warnMissingBundles(ctx context.Context, e datastore.Entry) {
	for _, name := range e.FederatesWith {
		if name == datastore.FederateWithAll {
			continue
		}
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			continue
		}
		if _, err := s.bundles.FederatedBundle(ctx, td); errors.Is(err, datastore.ErrNotFound) {
			s.log.Warn("entry federates with a trust domain we hold no bundle for; its SVID is issued, and the bundle is added when it arrives",
				"entry_id", e.ID, "spiffe_id", e.SPIFFEID.String(), "trust_domain", td.Name())
		}
	}
}

// entryFromProto validates an API entry and converts it.
func (s *entryService) entryFromProto(in *types.Entry) (datastore.Entry, *types.Status) {
	fail := func(format string, args ...any) (datastore.Entry, *types.Status) {
		return datastore.Entry{}, apiStatus(codes.InvalidArgument, "invalid entry: "+format, args...)
	}
	id, err := protoToID(in.GetSpiffeId())
	if err != nil {
		return fail("SPIFFE ID: %v", err)
	}
	if id.TrustDomain() != s.local {
		return fail("SPIFFE ID %s is not in this server's trust domain %s; a server issues SVIDs only for its own trust domain", id, s.local.Name())
	}
	// Without a parent ID, the server's own ID: treaty attests workloads
	// itself, so the parent does not restrict who gets the entry.
	parent, _ := spiffeid.FromPath(s.local, "/spire/server")
	if p := in.GetParentId(); p != nil {
		if parent, err = protoToID(p); err != nil {
			return fail("parent ID: %v", err)
		}
	}
	if len(in.GetSelectors()) == 0 {
		return fail("at least one selector is required, e.g. unix:uid:1000")
	}
	e := datastore.Entry{
		ID: in.GetId(), SPIFFEID: id, ParentID: parent, Hint: in.GetHint(),
		Admin: in.GetAdmin(), Downstream: in.GetDownstream(), DNSNames: in.GetDnsNames(),
		X509SVIDTTL: time.Duration(in.GetX509SvidTtl()) * time.Second, JWTSVIDTTL: time.Duration(in.GetJwtSvidTtl()) * time.Second,
	}
	// Settings treaty cannot honour are refused rather than dropped, except
	// in a field probe, which asks exactly this question.
	if in.GetStoreSvid() && !isFieldProbe(in) {
		return fail("store_svid is not supported: treaty has no SVID store plugins; workloads fetch their SVIDs over the Workload API (or use treaty x509 mint)")
	}
	if in.GetAdditionalAttributes().GetJwtSvidIncludeJti() {
		return fail("jwt_svid_include_jti is not supported: treaty's JWT-SVIDs carry no jti claim")
	}
	if in.GetX509SvidTtl() < 0 || in.GetJwtSvidTtl() < 0 {
		return fail("TTLs cannot be negative")
	}
	if in.GetExpiresAt() > 0 {
		e.ExpiresAt = time.Unix(in.GetExpiresAt(), 0).UTC()
	}
	for _, sel := range in.GetSelectors() {
		if sel.GetType() == "" || sel.GetValue() == "" || strings.Contains(sel.GetType(), ":") {
			return fail("selector %q: write it as type:value, e.g. unix:uid:1000", sel.GetType()+":"+sel.GetValue())
		}
		e.Selectors = append(e.Selectors, datastore.Selector{Type: sel.GetType(), Value: sel.GetValue()})
	}
	for _, name := range in.GetFederatesWith() {
		if name == datastore.FederateWithAll {
			e.FederatesWith = append(e.FederatesWith, name)
			continue
		}
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return fail("federates with %q: %v; name a trust domain (beta.test or spiffe://beta.test) or * for all", name, err)
		}
		if td == s.local {
			return fail("an entry cannot federate with its own trust domain %s", td.Name())
		}
		e.FederatesWith = append(e.FederatesWith, td.Name())
	}
	return e, nil
}

// fieldProbePath is the path of the entry spire-controller-manager creates,
// as both SPIFFE ID and parent ID, and deletes at once, to learn which
// entry fields a server supports: SPIRE's API answers with the created
// entry, and a field the server does not know comes back unset. treaty
// answers the probe as such a server, with store_svid unset, so the
// manager stops comparing that field instead of failing every reconcile.
const fieldProbePath = "/spire-controller-manager/unsupported-fields-test"

// isFieldProbe reports whether in is spire-controller-manager's field probe.
func isFieldProbe(in *types.Entry) bool {
	return in.GetSpiffeId().GetPath() == fieldProbePath && in.GetParentId().GetPath() == fieldProbePath &&
		in.GetSpiffeId().GetTrustDomain() == in.GetParentId().GetTrustDomain()
}

// maxEntryIDLen is the longest entry ID SPIRE's datastore accepts.
const maxEntryIDLen = 255

// checkEntryID applies SPIRE's rules to an entry ID the caller chose
// (spire-controller-manager's are "<prefix>.<uuid>"): at most 255
// characters, ASCII letters, digits, '-', '_' and '.'. An empty ID is
// fine: the store picks one.
func checkEntryID(id string) error {
	if len(id) > maxEntryIDLen {
		return fmt.Errorf("entry ID is %d characters long; at most %d are allowed", len(id), maxEntryIDLen)
	}
	for _, r := range id {
		if !entryIDChar(r) {
			return fmt.Errorf("entry ID %q contains %q; use ASCII letters, digits, '-', '_' and '.'", id, r)
		}
	}
	return nil
}

// entryIDChar reports whether r may appear in an entry ID (SPIRE's
// validEntryIDChars).
func entryIDChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

func protoToID(p *types.SPIFFEID) (spiffeid.ID, error) {
	if p == nil {
		return spiffeid.ID{}, errors.New("missing")
	}
	td, err := spiffeid.TrustDomainFromString(p.GetTrustDomain())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(td, p.GetPath())
}

func protoIDString(p *types.SPIFFEID) string {
	return "spiffe://" + p.GetTrustDomain() + p.GetPath()
}

// storeStatus maps a store error to an API status; nil for success.
func storeStatus(err error, doing string) *types.Status {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, datastore.ErrNotFound):
		return apiStatus(codes.NotFound, "failed to %s: entry not found", doing)
	case errors.Is(err, datastore.ErrAlreadyExists):
		return apiStatus(codes.AlreadyExists, "failed to %s: %v", doing, err)
	case diskFull(err):
		return apiStatus(codes.ResourceExhausted, "failed to %s: %s", doing, diskFullMessage(err))
	}
	return apiStatus(codes.Internal, "failed to %s: %v", doing, err)
}

func orOK(st *types.Status) *types.Status {
	if st == nil {
		return apiStatus(codes.OK, "OK")
	}
	return st
}
