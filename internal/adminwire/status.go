package adminwire

// StatusResponse is the federation status report. Times are RFC 3339 in
// UTC, "" when they have not happened; durations are seconds.
type StatusResponse struct {
	Relationships []RelationshipStatus `json:"relationships"`
	// BundleEndpointCertificateExpiry is when our bundle endpoint's
	// certificate expires; "" without a bundle endpoint or certificate.
	BundleEndpointCertificateExpiry string `json:"bundle_endpoint_certificate_expiry"`
	// FederationGaps are the registration entries that federate with a
	// trust domain the server holds no bundle for.
	FederationGaps []FederationGap `json:"federation_gaps"`
	// SignedBundles are the files of the signed bundles directory, when
	// one is configured.
	SignedBundles []SignedBundleFile `json:"signed_bundles,omitempty"`
	// NextAuthority is who has the prepared X.509 authority; absent when
	// none is prepared.
	NextAuthority *NextAuthority `json:"next_authority,omitempty"`
	// NextJWTAuthority is who has the prepared JWT key; absent when none
	// is prepared.
	NextJWTAuthority *NextAuthority `json:"next_jwt_authority,omitempty"`
}

// NextAuthority says which partners with receipts (their treaty fetched
// our bundle presenting its federation client SVID) hold a prepared
// authority: those last served a bundle with at least Sequence.
// Partners without receipts are unknown and not listed.
type NextAuthority struct {
	AuthorityID string `json:"authority_id"`
	// Sequence is the first local bundle's spiffe_sequence that holds it.
	Sequence uint64    `json:"sequence,string"`
	Partners []Receipt `json:"partners"`
}

// Receipt is a partner's latest authenticated fetch of our bundle.
type Receipt struct {
	TrustDomain string `json:"trust_domain"`
	Sequence    uint64 `json:"sequence,string"`
	FetchedAt   string `json:"fetched_at"`
	// HasNextAuthority says whether that bundle held the prepared
	// authority.
	HasNextAuthority bool `json:"has_next_authority"`
}

// RelationshipStatus is the freshness of one partner's bundle.
type RelationshipStatus struct {
	TrustDomain string `json:"trust_domain"`
	// State is healthy, failing, stale, never_fetched or static.
	State               string   `json:"state"`
	Endpoint            string   `json:"endpoint"`
	LastAttempt         string   `json:"last_attempt"`
	LastSuccess         string   `json:"last_success"`
	NextAttempt         string   `json:"next_attempt"`
	ConsecutiveFailures int      `json:"consecutive_failures"`
	LastError           string   `json:"last_error"`
	LastReason          string   `json:"last_reason"`
	Warnings            []string `json:"warnings"`
	HasBundle           bool     `json:"has_bundle"`
	// Sequence travels as a decimal string: the status message is a
	// google.protobuf.Struct, whose numbers are doubles, and a
	// spiffe_sequence has 64 bits (SPIFFE Trust Domain and Bundle §4.1.1).
	Sequence           uint64  `json:"sequence,string"`
	BundleUpdated      string  `json:"bundle_updated"`
	EarliestExpiry     string  `json:"earliest_expiry"`
	RefreshHintSeconds float64 `json:"refresh_hint_seconds"`
	// Ignored lists the entries of the partner's last fetched bundle that
	// were left out of it; their messages are among Warnings too.
	Ignored []IgnoredEntry `json:"ignored"`
	// PolledBy names the replica that polls the partner when several
	// replicas share a database; empty on a single server.
	PolledBy string `json:"polled_by"`
	// ManagedBy is "onboarding:<file name>" for a relationship reconciled
	// from the onboarding directory, empty for one made with the CLI or
	// API.
	ManagedBy string `json:"managed_by"`
}

// IgnoredEntry is one entry of a partner's bundle that was left out of it
// (SPIFFE Trust Domain and Bundle §4.2; X509-SVID and JWT-SVID §6).
type IgnoredEntry struct {
	// Index is the entry's position in "keys", from 0.
	Index int    `json:"index"`
	Use   string `json:"use,omitempty"`
	KeyID string `json:"kid,omitempty"`
	// Reason is the bundle check that failed, e.g. x5c or key-match.
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// FederationGap is a registration entry that federates with a trust domain
// the server holds no bundle for.
type FederationGap struct {
	EntryID     string `json:"entry_id"`
	SPIFFEID    string `json:"spiffe_id"`
	TrustDomain string `json:"trust_domain"`
}
