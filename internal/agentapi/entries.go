package agentapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/entrywire"
)

const (
	// entryPageSize is how many entries or entry revisions go in one
	// SyncAuthorizedEntries message, as in spire-server: the agent takes
	// the length of the first revision page as the size of the ID chunks
	// it asks for.
	entryPageSize = 500
	// maxMessageBytes is what a message may weigh: gRPC's default receive
	// limit (4 MiB), less room for the response's own fields.
	maxMessageBytes = 4<<20 - 1<<10
)

// Log attribute keys of the entry and SVID services.
const (
	attrEntryID = "entry_id"
	attrBytes   = "bytes"
)

// syncStream is the server side of a SyncAuthorizedEntries stream.
type syncStream = grpc.BidiStreamingServer[entryv1.SyncAuthorizedEntriesRequest, entryv1.SyncAuthorizedEntriesResponse]

// entryService serves the Entry API calls an agent makes: the entries it
// is authorized for (see Index.Authorized).
type entryService struct {
	entryv1.UnimplementedEntryServer
	index *Index
	// caller authenticates and authorizes the calling agent and returns
	// its node record; its errors are gRPC statuses, returned as they are.
	caller func(ctx context.Context) (datastore.AttestedNode, error)
	// log receives entries too large to send; nil discards.
	log *slog.Logger
	// stats counts the syncs and their duration; nil counts nothing.
	stats *stats
	// now is the clock; nil means time.Now.
	now func() time.Time
}

// authorized returns the entries the calling agent is authorized for,
// sorted by ID.
func (s *entryService) authorized(ctx context.Context) ([]datastore.Entry, error) {
	node, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	return s.index.Authorized(node.SPIFFEID, node.Selectors), nil
}

// GetAuthorizedEntries returns every entry the agent is authorized for in
// one message (the agent calls it only with the deprecated
// use_sync_authorized_entries = false).
func (s *entryService) GetAuthorizedEntries(ctx context.Context, req *entryv1.GetAuthorizedEntriesRequest) (*entryv1.GetAuthorizedEntriesResponse, error) {
	entries, err := s.authorized(ctx)
	if err != nil {
		return nil, err
	}
	resp := &entryv1.GetAuthorizedEntriesResponse{Entries: make([]*types.Entry, 0, len(entries))}
	mask := agentFields(req.GetOutputMask())
	for _, e := range entries {
		resp.Entries = append(resp.Entries, entryToProto(e, mask))
	}
	return resp, nil
}

// SyncAuthorizedEntries streams the entries the agent is authorized for,
// as spire-server v1.15.3 does: the whole list in one message when it fits
// one page; otherwise pages of revisions, after which the agent asks for
// the entries it lacks or holds stale, by ID, until it ends the stream.
// Every stream is counted with its duration.
func (s *entryService) SyncAuthorizedEntries(stream syncStream) error {
	start := s.clock()
	err := s.syncAuthorizedEntries(stream)
	s.stats.synced(s.clock().Sub(start))
	return err
}

func (s *entryService) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}

func (s *entryService) syncAuthorizedEntries(stream syncStream) error {
	entries, err := s.authorized(stream.Context())
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	mask, err := initialMask(req)
	if err != nil {
		return err
	}
	if whole, ok := s.wholeList(entries, mask); ok {
		return stream.Send(whole)
	}
	if err := sendRevisions(stream, entries); err != nil {
		return err
	}
	return s.serveIDs(stream, entries, mask)
}

// initialMask checks the first request of a sync and returns its output
// mask, which applies to the whole stream, limited to what agents read
// (agentFields). The agent needs revision numbers to tell stale entries, so
// they cannot be masked out; a missing mask means every field.
func initialMask(req *entryv1.SyncAuthorizedEntriesRequest) (*types.EntryMask, error) {
	if len(req.GetIds()) > 0 {
		return nil, status.Error(codes.InvalidArgument, "specifying IDs on initial request is not supported")
	}
	if mask := req.GetOutputMask(); mask != nil && !mask.GetRevisionNumber() {
		return nil, status.Error(codes.InvalidArgument, "revision number cannot be masked")
	}
	return agentFields(req.GetOutputMask()), nil
}

// wholeList returns the single response holding every entry, if they fit
// one page and one message. The agent takes a first response without
// revisions as the complete list and reads nothing more, so a list that
// does not fit one message goes the paged way.
func (s *entryService) wholeList(entries []datastore.Entry, mask *types.EntryMask) (*entryv1.SyncAuthorizedEntriesResponse, bool) {
	if len(entries) > entryPageSize {
		return nil, false
	}
	resp := &entryv1.SyncAuthorizedEntriesResponse{Entries: make([]*types.Entry, 0, len(entries))}
	size := 0
	for _, e := range entries {
		pe := entryToProto(e, mask)
		size += fieldSize(pe)
		if size > maxMessageBytes {
			return nil, false
		}
		resp.Entries = append(resp.Entries, pe)
	}
	return resp, true
}

// sendRevisions sends the revision of every entry, a page at a time, with
// more set on all pages but the last.
func sendRevisions(stream syncStream, entries []datastore.Entry) error {
	page := &entryv1.SyncAuthorizedEntriesResponse{}
	size := 0
	for _, e := range entries {
		r := &entryv1.EntryRevision{Id: e.ID, RevisionNumber: e.RevisionNumber, CreatedAt: entrywire.UnixOrZero(e.CreatedAt)}
		if len(page.EntryRevisions) == entryPageSize || size+fieldSize(r) > maxMessageBytes {
			page.More = true
			if err := stream.Send(page); err != nil {
				return err
			}
			page, size = &entryv1.SyncAuthorizedEntriesResponse{}, 0
		}
		page.EntryRevisions = append(page.EntryRevisions, r)
		size += fieldSize(r)
	}
	return stream.Send(page)
}

// serveIDs answers each request for entries by ID with pages of entries,
// more set on all but the last page of each answer; IDs the agent is not
// authorized for are left out. It returns when the agent ends the stream,
// which is how a sync ends.
func (s *entryService) serveIDs(stream syncStream, entries []datastore.Entry, mask *types.EntryMask) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.sendEntries(stream, lookupSorted(entries, req.GetIds()), mask); err != nil {
			return err
		}
	}
}

// lookupSorted returns the entries among sorted entries with the given
// IDs, in ID order, each once.
func lookupSorted(entries []datastore.Entry, ids []string) []datastore.Entry {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var out []datastore.Entry
	for _, id := range ids {
		i, found := slices.BinarySearchFunc(entries, id, func(e datastore.Entry, id string) int { return strings.Compare(e.ID, id) })
		if found {
			out = append(out, entries[i])
		}
	}
	return out
}

// sendEntries sends entries in pages of at most entryPageSize entries and
// maxMessageBytes, the last (possibly empty) page without more. An entry
// too large for a message of its own is left out and logged.
func (s *entryService) sendEntries(stream syncStream, entries []datastore.Entry, mask *types.EntryMask) error {
	page := &entryv1.SyncAuthorizedEntriesResponse{}
	size := 0
	for _, e := range entries {
		pe := entryToProto(e, mask)
		n := fieldSize(pe)
		if n > maxMessageBytes {
			s.logger().Warn("entry too large to send to an agent", attrEntryID, e.ID, attrBytes, n)
			continue
		}
		if len(page.Entries) == entryPageSize || size+n > maxMessageBytes {
			page.More = true
			if err := stream.Send(page); err != nil {
				return err
			}
			page, size = &entryv1.SyncAuthorizedEntriesResponse{}, 0
		}
		page.Entries = append(page.Entries, pe)
		size += n
	}
	return stream.Send(page)
}

func (s *entryService) logger() *slog.Logger {
	if s.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.log
}

// fieldSize is what m adds to a message as one element of a repeated
// field (field numbers below 16 take a one-byte tag).
func fieldSize(m proto.Message) int {
	return 1 + protowire.SizeBytes(proto.Size(m))
}

// agentFields limits mask (nil: every field) to the fields an agent reads:
// the ID always; SPIFFE ID, parent ID, selectors, federated trust domains,
// admin, downstream, hint, revision and creation time on request. The
// server alone uses the rest (TTLs, DNS names, expiry) when it signs.
func agentFields(mask *types.EntryMask) *types.EntryMask {
	all := mask == nil
	return &types.EntryMask{
		SpiffeId: all || mask.GetSpiffeId(), ParentId: all || mask.GetParentId(), Selectors: all || mask.GetSelectors(),
		FederatesWith: all || mask.GetFederatesWith(), Admin: all || mask.GetAdmin(), Downstream: all || mask.GetDownstream(),
		Hint: all || mask.GetHint(), RevisionNumber: all || mask.GetRevisionNumber(), CreatedAt: all || mask.GetCreatedAt(),
	}
}

// entryToProto converts an entry for an agent, keeping the fields in mask
// (from agentFields).
func entryToProto(e datastore.Entry, mask *types.EntryMask) *types.Entry {
	pe := entrywire.ToProto(e, mask)
	pe.FederatesWith = federatesWith(pe.FederatesWith)
	return pe
}

// federatesWith returns the trust domain names an agent can read. treaty's
// "*" (every federated bundle) is left out: spire-agent v1.15.3 drops a
// whole entry naming something that is not a trust domain. The server
// expands "*" to the trust domains it holds bundles for before entries
// reach the index (expandFederatesWith); this is the last guard.
func federatesWith(names []string) []string {
	if !slices.Contains(names, datastore.FederateWithAll) {
		return names
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n != datastore.FederateWithAll {
			out = append(out, n)
		}
	}
	return out
}
