package adminapi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/entrywire"
)

// AgentStore keeps the attested agents and the join tokens they attest with.
type AgentStore interface {
	AttestedNode(ctx context.Context, id spiffeid.ID) (datastore.AttestedNode, error)
	ListAttestedNodes(ctx context.Context) ([]datastore.AttestedNode, error)
	BanAttestedNode(ctx context.Context, id spiffeid.ID) error
	DeleteAttestedNode(ctx context.Context, id spiffeid.ID) error
	CreateJoinToken(ctx context.Context, t datastore.JoinToken) error
}

// expiresBeforeLayout is the time layout of the by_expires_before filter,
// as spire-server's CLI writes it and SPIRE's server parses it.
const expiresBeforeLayout = "2006-01-02 15:04:05 -0700 -07"

// joinTokenAttestor is the attestation type of agents that attested with a
// join token; their IDs are spiffe://<td>/spire/agent/join_token/<token>.
const joinTokenAttestor = "join_token"

// notOnAdminSocket is the answer to the calls agents make themselves.
const notOnAdminSocket = "agents do not call the admin socket: they connect to the server's agent_api.address"

// agentService implements the administrative half of SPIRE's Agent API:
// listing, banning and evicting attested agents, and join tokens. The calls
// agents make (AttestAgent, RenewAgent, PostStatus) belong to the agent
// listener, not the admin socket.
type agentService struct {
	agentv1.UnimplementedAgentServer
	local   spiffeid.TrustDomain
	store   AgentStore
	entries EntryStore // the join-token alias entries; nil refuses CreateJoinToken with an agent ID
	now     func() time.Time
}

// agentFilter is ListAgents' and CountAgents' filter, which the API spells
// as two messages with the same fields.
type agentFilter interface {
	GetByAttestationType() string
	GetBySelectorMatch() *types.SelectorMatch
	GetByExpiresBefore() string
	GetByBanned() *wrapperspb.BoolValue
	GetByCanReattest() *wrapperspb.BoolValue
}

func (s *agentService) CountAgents(ctx context.Context, req *agentv1.CountAgentsRequest) (*agentv1.CountAgentsResponse, error) {
	var f agentFilter
	if req.GetFilter() != nil {
		f = req.GetFilter()
	}
	nodes, err := s.filtered(ctx, f)
	if err != nil {
		return nil, err
	}
	return &agentv1.CountAgentsResponse{Count: int32(len(nodes))}, nil //nolint:gosec // agent counts fit
}

// ListAgents pages by SPIFFE ID: the page token is the last ID of the page
// before, so that deleting agents while paging (agent purge) skips none.
func (s *agentService) ListAgents(ctx context.Context, req *agentv1.ListAgentsRequest) (*agentv1.ListAgentsResponse, error) {
	var f agentFilter
	if req.GetFilter() != nil {
		f = req.GetFilter()
	}
	nodes, err := s.filtered(ctx, f)
	if err != nil {
		return nil, err
	}
	if tok := req.GetPageToken(); tok != "" {
		start := 0
		for start < len(nodes) && nodes[start].SPIFFEID.String() <= tok {
			start++
		}
		nodes = nodes[start:]
	}
	resp := &agentv1.ListAgentsResponse{}
	if size := int(req.GetPageSize()); size > 0 && size < len(nodes) {
		nodes = nodes[:size]
		resp.NextPageToken = nodes[size-1].SPIFFEID.String()
	}
	for _, n := range nodes {
		resp.Agents = append(resp.Agents, agentToProto(n, req.GetOutputMask()))
	}
	return resp, nil
}

// filtered returns the nodes that pass f (all when f is nil), ordered by
// SPIFFE ID.
func (s *agentService) filtered(ctx context.Context, f agentFilter) ([]datastore.AttestedNode, error) {
	match, err := newNodeMatcher(f)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	all, err := s.store.ListAttestedNodes(ctx)
	if err != nil {
		return nil, agentStoreError(err, "list agents")
	}
	var out []datastore.AttestedNode
	for _, n := range all {
		if match(n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// newNodeMatcher turns a filter into a predicate, as SPIRE's datastore
// applies it: every field set must hold. An unparsable by_expires_before is
// ignored, as SPIRE ignores it.
func newNodeMatcher(f agentFilter) (func(datastore.AttestedNode) bool, error) {
	if f == nil {
		return func(datastore.AttestedNode) bool { return true }, nil
	}
	var want []string
	sm := f.GetBySelectorMatch()
	if sm != nil {
		if len(sm.GetSelectors()) == 0 {
			return nil, errors.New("failed to parse selectors: cannot list by empty selector set")
		}
		for _, sel := range sm.GetSelectors() {
			if err := checkSelector(sel); err != nil {
				return nil, fmt.Errorf("failed to parse selectors: %w", err)
			}
			want = append(want, sel.GetType()+":"+sel.GetValue())
		}
	}
	before, _ := time.Parse(expiresBeforeLayout, f.GetByExpiresBefore())
	return func(n datastore.AttestedNode) bool {
		switch {
		case f.GetByAttestationType() != "" && n.AttestationType != f.GetByAttestationType(),
			f.GetByBanned() != nil && n.Banned() != f.GetByBanned().GetValue(),
			f.GetByCanReattest() != nil && n.CanReattest != f.GetByCanReattest().GetValue(),
			!before.IsZero() && !n.NotAfter.Before(before):
			return false
		case sm != nil:
			return nodeSelectorsMatch(n, want, sm.GetMatch())
		}
		return true
	}, nil
}

// nodeSelectorsMatch applies a selector match to a node's selectors. Unlike
// the entry filter's subset, SPIRE's node subset asks for at least one
// selector in common: a node with no selectors matches no subset.
func nodeSelectorsMatch(n datastore.AttestedNode, want []string, match types.SelectorMatch_MatchBehavior) bool {
	have := make([]string, len(n.Selectors))
	for i, sel := range n.Selectors {
		have[i] = sel.Type + ":" + sel.Value
	}
	if match == types.SelectorMatch_MATCH_SUBSET && len(have) == 0 {
		return false
	}
	return setMatch(have, want, int32(match))
}

func checkSelector(sel *types.Selector) error {
	switch {
	case sel.GetType() == "":
		return errors.New("missing selector type")
	case strings.Contains(sel.GetType(), ":"):
		return errors.New("selector type contains ':'")
	case sel.GetValue() == "":
		return errors.New("missing selector value")
	}
	return nil
}

func (s *agentService) GetAgent(ctx context.Context, req *agentv1.GetAgentRequest) (*types.Agent, error) {
	id, err := s.agentID(req.GetId())
	if err != nil {
		return nil, err
	}
	n, err := s.store.AttestedNode(ctx, id)
	if err != nil {
		return nil, agentStoreError(err, "read agent")
	}
	return agentToProto(n, req.GetOutputMask()), nil
}

// BanAgent clears the agent's serial numbers: SPIRE's banned state, in which
// the agent cannot renew or attest again until it is evicted.
func (s *agentService) BanAgent(ctx context.Context, req *agentv1.BanAgentRequest) (*emptypb.Empty, error) {
	id, err := s.agentID(req.GetId())
	if err != nil {
		return nil, err
	}
	if err := s.store.BanAttestedNode(ctx, id); err != nil {
		return nil, agentStoreError(err, "ban agent")
	}
	return &emptypb.Empty{}, nil
}

// DeleteAgent evicts the agent: it deletes its record and selectors, and,
// for a join-token agent, the alias entry CreateJoinToken made for it, as
// SPIRE's datastore does. The agent may attest again. Unlike SPIRE's one
// transaction, the alias goes first: a failure in between leaves the agent,
// whose eviction can be retried, never an alias without its agent.
func (s *agentService) DeleteAgent(ctx context.Context, req *agentv1.DeleteAgentRequest) (*emptypb.Empty, error) {
	id, err := s.agentID(req.GetId())
	if err != nil {
		return nil, err
	}
	n, err := s.store.AttestedNode(ctx, id)
	if err != nil {
		return nil, agentStoreError(err, "read agent")
	}
	if n.AttestationType == joinTokenAttestor {
		if err := s.deleteAliasEntries(ctx, id); err != nil {
			return nil, agentStoreError(err, "delete the join token's alias entry")
		}
	}
	if err := s.store.DeleteAttestedNode(ctx, id); err != nil {
		return nil, agentStoreError(err, "delete agent")
	}
	return &emptypb.Empty{}, nil
}

// deleteAliasEntries deletes the entries of the shape CreateJoinToken
// makes: parent the agent, one selector spiffe_id:<the agent>. Other
// entries under the agent are the operator's and stay.
func (s *agentService) deleteAliasEntries(ctx context.Context, agent spiffeid.ID) error {
	if s.entries == nil {
		return nil
	}
	all, err := s.entries.ListEntries(ctx)
	if err != nil {
		return err
	}
	for _, e := range all {
		if e.ParentID == agent && len(e.Selectors) == 1 && e.Selectors[0] == aliasSelector(agent) {
			if err := s.entries.DeleteEntry(ctx, e.ID); err != nil && !errors.Is(err, datastore.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

func aliasSelector(agent spiffeid.ID) datastore.Selector {
	return datastore.Selector{Type: "spiffe_id", Value: agent.String()}
}

// CreateJoinToken stores a single-use token, a random UUID unless the
// caller chose one. With an agent ID, it also creates the alias entry that
// gives the agent attesting with the token that ID, as SPIRE does.
func (s *agentService) CreateJoinToken(ctx context.Context, req *agentv1.CreateJoinTokenRequest) (*types.JoinToken, error) {
	if req.GetTtl() < 1 {
		return nil, status.Error(codes.InvalidArgument, "ttl is required, you must provide one")
	}
	var alias spiffeid.ID
	if req.GetAgentId() != nil {
		id, err := s.workloadID(req.GetAgentId())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid agent ID: %v", err)
		}
		if s.entries == nil {
			return nil, status.Error(codes.Unimplemented, "this server keeps no registration entries, so a join token cannot carry an agent ID")
		}
		alias = id
	}
	token := req.GetToken()
	if token == "" {
		token = newUUID()
	}
	agent, err := spiffeid.FromSegments(s.local, "spire", "agent", joinTokenAttestor, token)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid token: %v", err)
	}
	expires := s.now().Add(time.Duration(req.GetTtl()) * time.Second)
	if err := s.store.CreateJoinToken(ctx, datastore.JoinToken{Token: token, ExpiresAt: expires}); err != nil {
		return nil, agentStoreError(err, "create token")
	}
	if !alias.IsZero() {
		e := datastore.Entry{SPIFFEID: alias, ParentID: agent, Selectors: []datastore.Selector{aliasSelector(agent)}}
		if _, err := s.entries.CreateEntry(ctx, e); err != nil {
			return nil, agentStoreError(err, "create join token registration entry")
		}
	}
	return &types.JoinToken{Value: token, ExpiresAt: expires.Unix()}, nil
}

func (*agentService) AttestAgent(grpc.BidiStreamingServer[agentv1.AttestAgentRequest, agentv1.AttestAgentResponse]) error {
	return status.Error(codes.Unimplemented, notOnAdminSocket)
}

func (*agentService) RenewAgent(context.Context, *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	return nil, status.Error(codes.Unimplemented, notOnAdminSocket)
}

func (*agentService) PostStatus(context.Context, *agentv1.PostStatusRequest) (*agentv1.PostStatusResponse, error) {
	return nil, status.Error(codes.Unimplemented, notOnAdminSocket)
}

// agentID checks that p names an agent of this trust domain: a path under
// /spire/agent/, SPIRE's agent namespace.
func (s *agentService) agentID(p *types.SPIFFEID) (spiffeid.ID, error) {
	id, err := protoToID(p)
	if err == nil && !id.MemberOf(s.local) {
		err = fmt.Errorf("%q is not a member of trust domain %q", id, s.local)
	}
	if err == nil && !strings.HasPrefix(id.Path(), "/spire/agent/") {
		err = fmt.Errorf("%q is not an agent in trust domain %q; path is not in the agent namespace", id, s.local)
	}
	if err != nil {
		return spiffeid.ID{}, status.Errorf(codes.InvalidArgument, "invalid agent ID: %v", err)
	}
	return id, nil
}

// workloadID checks that p names a workload of this trust domain: not the
// trust domain itself and not in SPIRE's reserved /spire namespace.
func (s *agentService) workloadID(p *types.SPIFFEID) (spiffeid.ID, error) {
	id, err := protoToID(p)
	switch {
	case err != nil:
		return spiffeid.ID{}, err
	case !id.MemberOf(s.local):
		return spiffeid.ID{}, fmt.Errorf("%q is not a member of trust domain %q", id, s.local)
	case id.Path() == "":
		return spiffeid.ID{}, fmt.Errorf("%q is not a workload in trust domain %q; path is empty", id, s.local)
	case id.Path() == "/spire" || strings.HasPrefix(id.Path(), "/spire/"):
		return spiffeid.ID{}, fmt.Errorf("%q is not a workload in trust domain %q; path is in the reserved namespace", id, s.local)
	}
	return id, nil
}

// agentToProto maps a node to SPIRE's Agent as SPIRE does: the current
// serial number and expiry, banned when there is no serial number. A mask
// keeps the ID and the fields it sets.
func agentToProto(n datastore.AttestedNode, mask *types.AgentMask) *types.Agent {
	all := mask == nil
	out := &types.Agent{Id: entrywire.IDToProto(n.SPIFFEID)}
	if all || mask.GetAttestationType() {
		out.AttestationType = n.AttestationType
	}
	if all || mask.GetX509SvidSerialNumber() {
		out.X509SvidSerialNumber = n.SerialNumber
	}
	if (all || mask.GetX509SvidExpiresAt()) && !n.NotAfter.IsZero() {
		out.X509SvidExpiresAt = n.NotAfter.Unix()
	}
	if all || mask.GetSelectors() {
		for _, sel := range n.Selectors {
			out.Selectors = append(out.Selectors, &types.Selector{Type: sel.Type, Value: sel.Value})
		}
	}
	if all || mask.GetBanned() {
		out.Banned = n.Banned()
	}
	if all || mask.GetCanReattest() {
		out.CanReattest = n.CanReattest
	}
	if all || mask.GetAgentVersion() {
		out.AgentVersion = n.AgentVersion
	}
	return out
}

// agentStoreError maps a store error of an agent call to a status.
func agentStoreError(err error, doing string) error {
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return status.Error(codes.NotFound, "agent not found")
	case errors.Is(err, datastore.ErrAlreadyExists):
		return status.Errorf(codes.AlreadyExists, "failed to %s: %v", doing, err)
	case diskFull(err):
		return status.Errorf(codes.ResourceExhausted, "failed to %s: %s", doing, diskFullMessage(err))
	}
	return status.Errorf(codes.Internal, "failed to %s: %v", doing, err)
}

// newUUID returns a random (version 4) UUID, the shape of SPIRE's join
// tokens.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
