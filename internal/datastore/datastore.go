// Package datastore is the datastore contract: the records treaty persists,
// the errors its stores return, and Store, the interface every engine
// provides. The engines live in subpackages (sqlite, the embedded default,
// and postgres, for several replicas), both built on sqlstore and both held
// to the contract by datastoretest's one suite. Consumers declare the small
// interfaces they need next to their own code.
package datastore

import (
	"context"
	"errors"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Errors callers branch on. Stores wrap them; test with errors.Is.
var (
	// ErrNotFound means the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists means a record with the same key exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrSequenceRegression means a write would move the local bundle's
	// spiffe_sequence backwards or reuse it for different content.
	ErrSequenceRegression = errors.New("bundle sequence would not increase")
	// ErrAuthoritiesChanged means an authority change was computed from
	// authorities that another replica has changed since: nothing was
	// written; read them again and decide again.
	ErrAuthoritiesChanged = errors.New("the authorities changed since they were read")
	// ErrInviteUsed means a federation invite was joined before.
	ErrInviteUsed = errors.New("invite already used")
)

// AuthorityKind tells X.509 authorities from JWT signing keys.
type AuthorityKind string

// Authority kinds.
const (
	KindX509 AuthorityKind = "x509"
	KindJWT  AuthorityKind = "jwt"
)

// AuthorityState is a step of an authority's lifecycle.
type AuthorityState string

// Authority states. An authority is prepared (published, not signing), then
// active (signing), then old (published, no longer signing) until it expires
// or is revoked. External authorities were appended by an operator: they are
// published but treaty holds no key for them.
const (
	StatePrepared AuthorityState = "prepared"
	StateActive   AuthorityState = "active"
	StateOld      AuthorityState = "old"
	StateExternal AuthorityState = "external"
)

// Authority is one X.509 CA or JWT signing key of the local trust domain.
type Authority struct {
	Kind AuthorityKind
	// ID is the hex subject key identifier (X.509) or the key ID (JWT).
	ID      string
	State   AuthorityState
	Tainted bool
	// KeyName names the private key in the keystore; empty for external
	// authorities.
	KeyName string
	// CertificateChain holds concatenated DER certificates, the authority's
	// own first, then any upstream intermediates. Empty for JWT keys.
	CertificateChain []byte
	// PublicKey is the PKIX DER public key.
	PublicKey []byte
	// UpstreamSKID is the hex subject key identifier of the upstream CA that
	// signed this authority, if any.
	UpstreamSKID string
	NotBefore    time.Time
	NotAfter     time.Time
	PreparedAt   time.Time
	ActivatedAt  time.Time
	// DeactivatedAt is when the authority became old.
	DeactivatedAt time.Time
	// PublishedSequence is the spiffe_sequence of the first local bundle
	// that held the authority: a partner served that sequence or a later
	// one has it. 0 when not known (stored by a treaty before schema 9).
	PublishedSequence uint64
}

// AuthorityRef names an authority.
type AuthorityRef struct {
	Kind AuthorityKind
	ID   string
}

// Bundle is a stored SPIFFE bundle, local or federated.
type Bundle struct {
	TrustDomain spiffeid.TrustDomain
	// Document is the SPIFFE bundle (JWK Set) as canonical JSON.
	Document []byte
	// Sequence is the bundle's spiffe_sequence.
	Sequence  uint64
	UpdatedAt time.Time
}

// JournalEvent records one change of the local authorities, for audit.
type JournalEvent struct {
	At          time.Time
	Kind        AuthorityKind
	AuthorityID string
	Event       string
	Detail      string
}

// AuthorityChange is a set of writes applied in one transaction: authorities
// put and deleted, journal events, and optionally the new local bundle.
type AuthorityChange struct {
	Put     []Authority
	Delete  []AuthorityRef
	Journal []JournalEvent
	// LocalBundle, when set, replaces the local bundle. Its sequence must be
	// higher than the stored one (or equal with identical content).
	LocalBundle *Bundle
	// IfRevision, when set, is the authority revision the change was
	// computed from: the change applies only if the stored revision is
	// still that one (else ErrAuthoritiesChanged). Every change raises the
	// revision by one.
	IfRevision *uint64
}

// Relationship is a stored federation relationship.
type Relationship struct {
	TrustDomain spiffeid.TrustDomain
	// EndpointURLs are the partner's bundle endpoints, primary first.
	EndpointURLs []string
	// Profile is "https_web" or "https_spiffe".
	Profile          string
	EndpointSPIFFEID string
	// ManagedBy is empty for API-created relationships and
	// "onboarding:<file>" for reconciled ones.
	ManagedBy string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Selector is one attribute of a workload or an agent, e.g. {Type: "unix",
// Value: "uid:1000"}: an entry lists those a workload must have for it to
// apply; node attestation gives an agent its own.
type Selector struct {
	Type  string
	Value string
}

// FederateWithAll in Entry.FederatesWith gives the entry every federated
// bundle the server holds.
const FederateWithAll = "*"

// Entry is a registration entry: a SPIFFE ID and the selectors a workload
// must match to receive an SVID for it.
type Entry struct {
	// ID is the entry's unique ID (a random UUID unless the creator gave one).
	ID       string
	SPIFFEID spiffeid.ID
	// ParentID is recorded for compatibility with SPIRE tooling; treaty
	// attests workloads itself, so it does not restrict who gets the entry.
	ParentID  spiffeid.ID
	Selectors []Selector
	// FederatesWith lists trust domain names whose bundles the workload
	// receives, or FederateWithAll.
	FederatesWith []string
	// X509SVIDTTL and JWTSVIDTTL override the server defaults when non-zero.
	X509SVIDTTL time.Duration
	JWTSVIDTTL  time.Duration
	DNSNames    []string
	Hint        string
	Admin       bool
	Downstream  bool
	// ExpiresAt, when non-zero, is when the entry stops being served.
	ExpiresAt time.Time
	// RevisionNumber increases with every update.
	RevisionNumber int64
	CreatedAt      time.Time
}

// AttestedNode is an agent that attested to the server (SPIRE's attested
// node): its SPIFFE ID, how it attested, the serial numbers of its
// X509-SVIDs and the selectors attestation gave it.
type AttestedNode struct {
	SPIFFEID spiffeid.ID
	// AttestationType names the node attestor that admitted the agent,
	// e.g. "join_token" or "x509pop".
	AttestationType string
	// SerialNumber is the decimal serial number of the agent's current
	// X509-SVID, as SPIRE stores it; empty means the agent is banned.
	SerialNumber string
	// NotAfter is when the current X509-SVID expires.
	NotAfter time.Time
	// NewSerialNumber and NewNotAfter describe the X509-SVID a renewal
	// issued, until the agent first presents it and it becomes current;
	// empty and zero otherwise.
	NewSerialNumber string
	NewNotAfter     time.Time
	// CanReattest says whether the agent attests again to get a new SVID
	// (x509pop) rather than renewing it (join_token).
	CanReattest bool
	Selectors   []Selector
	// AgentVersion is the version the agent reported (PostStatus).
	AgentVersion string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Banned reports whether the node is banned. As in SPIRE, an agent without a
// current serial number is refused whatever certificate it presents.
func (n AttestedNode) Banned() bool { return n.SerialNumber == "" }

// Lease says which replica does a job (polls a partner, rotates the CA)
// until when.
type Lease struct {
	Name      string
	Holder    string
	ExpiresAt time.Time
}

// PollRecord is what the last polls of one partner found: kept across
// restarts so that "last success" survives one during the partner's outage.
type PollRecord struct {
	TrustDomain         spiffeid.TrustDomain
	LastAttempt         time.Time
	LastSuccess         time.Time
	ConsecutiveFailures int
	LastError           string
	LastReason          string
}

// SealedKey is a private key stored sealed in the database.
type SealedKey struct {
	Name      string
	Sealed    []byte
	CreatedAt time.Time
}

// JoinToken is a single-use secret with which an agent attests through the
// join_token attestor.
type JoinToken struct {
	Token     string
	ExpiresAt time.Time
}

// Store is the datastore contract: every record treaty keeps, as each
// engine (sqlite, postgres) provides it. The composition root holds a
// Store; the parts it wires take the few methods they use through their
// own small interfaces. datastoretest holds every engine to the contract
// with one suite.
//
// Each method documents its errors on the engines' shared implementation
// (sqlstore); callers test them with errors.Is against the errors above.
type Store interface {
	// The local trust domain's authorities and bundle.
	ListAuthorities(ctx context.Context) ([]Authority, error)
	AuthorityRevision(ctx context.Context) (uint64, error)
	CommitAuthorities(ctx context.Context, change AuthorityChange) error
	Journal(ctx context.Context, limit int) ([]JournalEvent, error)
	LocalBundle(ctx context.Context) (Bundle, error)

	// Partners' bundles.
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (Bundle, error)
	ListFederatedBundles(ctx context.Context, after string, limit int) ([]Bundle, error)
	CountBundles(ctx context.Context) (int, error)
	CreateFederatedBundle(ctx context.Context, b Bundle) error
	UpdateFederatedBundle(ctx context.Context, b Bundle) error
	SetFederatedBundle(ctx context.Context, b Bundle) error
	DeleteFederatedBundle(ctx context.Context, td spiffeid.TrustDomain) error

	// Federation relationships and invites.
	ListRelationships(ctx context.Context) ([]Relationship, error)
	Relationship(ctx context.Context, td spiffeid.TrustDomain) (Relationship, error)
	CreateRelationship(ctx context.Context, r Relationship, bootstrap *Bundle) (bool, error)
	CreateRelationships(ctx context.Context, rels []Relationship, bootstraps []*Bundle) ([]bool, []error)
	UpdateRelationship(ctx context.Context, r Relationship, bootstrap *Bundle) (bool, error)
	DeleteRelationship(ctx context.Context, td spiffeid.TrustDomain) error
	PutBootstrapBundle(ctx context.Context, b Bundle) (bool, error)
	JoinInvite(ctx context.Context, r Relationship, b Bundle, nonce string) error
	// Partners' authenticated fetches of the local bundle (Receipt).
	PutReceipts(ctx context.Context, receipts []Receipt) error
	ListReceipts(ctx context.Context) ([]Receipt, error)
	// What polling each partner last found (PollRecord).
	SavePollRecords(ctx context.Context, records []PollRecord) error
	ListPollRecords(ctx context.Context) ([]PollRecord, error)

	// Registration entries.
	CreateEntry(ctx context.Context, e Entry) (Entry, error)
	UpdateEntry(ctx context.Context, e Entry) (Entry, error)
	DeleteEntry(ctx context.Context, id string) error
	Entry(ctx context.Context, id string) (Entry, error)
	ListEntries(ctx context.Context) ([]Entry, error)
	CountEntries(ctx context.Context) (int, error)

	// Agents and their join tokens.
	CreateAttestedNode(ctx context.Context, n AttestedNode) (AttestedNode, error)
	AttestedNode(ctx context.Context, id spiffeid.ID) (AttestedNode, error)
	ListAttestedNodes(ctx context.Context) ([]AttestedNode, error)
	UpdateAttestedNode(ctx context.Context, n AttestedNode) (AttestedNode, error)
	DeleteAttestedNode(ctx context.Context, id spiffeid.ID) error
	BanAttestedNode(ctx context.Context, id spiffeid.ID) error
	PromoteNewSerial(ctx context.Context, id spiffeid.ID, serial string) (bool, error)
	CreateJoinToken(ctx context.Context, t JoinToken) error
	ConsumeJoinToken(ctx context.Context, token string) (JoinToken, error)
	PruneJoinTokens(ctx context.Context, before time.Time) (int, error)

	// Coordination of replicas sharing the database.
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	Lease(ctx context.Context, name string) (Lease, error)
	PutSealedKey(ctx context.Context, name string, sealed []byte) error
	SealedKey(ctx context.Context, name string) ([]byte, error)
	DeleteSealedKey(ctx context.Context, name string) error
	ListSealedKeys(ctx context.Context) ([]SealedKey, error)

	// Close releases the database.
	Close() error
}
