package adminwire

// InviteRequest asks for an invite to our trust domain.
type InviteRequest struct {
	// URL is where partners reach our bundle endpoint; empty means the
	// server's advertised one.
	URL string `json:"url"`
	// TTLSeconds is how long the invite can be joined; zero means
	// DefaultInviteTTL.
	TTLSeconds float64 `json:"ttl_seconds"`
	// EmbedBundle carries our bundle in the invite, so the partner's first
	// fetch needs no trusting.
	EmbedBundle bool `json:"embed_bundle"`
	// Reverse asks the partner to answer with an invite of theirs.
	Reverse bool `json:"reverse"`
}

// InviteResponse is an invite and what it is for.
type InviteResponse struct {
	// Token is the one-line invite the partner joins.
	Token string `json:"token"`
	// Expires is when the invite stops being valid, RFC 3339.
	Expires     string `json:"expires"`
	TrustDomain string `json:"trust_domain"`
	URL         string `json:"url"`
	Profile     string `json:"profile"`
	// Fingerprint is that of the bundle the partner must find at URL.
	Fingerprint string `json:"fingerprint"`
}

// JoinRequest accepts a partner's invite.
type JoinRequest struct {
	Token string `json:"token"`
	// Reverse asks for an invite of ours for the partner in the response.
	Reverse bool `json:"reverse"`
	// URL is where the partner reaches our bundle endpoint, for the
	// reverse invite; empty means the server's advertised one.
	URL string `json:"url"`
}

// JoinResponse describes the relationship a join created.
type JoinResponse struct {
	TrustDomain string `json:"trust_domain"`
	Profile     string `json:"profile"`
	URL         string `json:"url"`
	Fingerprint string `json:"fingerprint"`
	// Sequence is the spiffe_sequence of the partner's bundle stored, as a
	// decimal string (see RelationshipStatus.Sequence).
	Sequence uint64 `json:"sequence,string"`
	// ReverseToken is an invite of ours for the partner, when the request
	// or the invite asked for one.
	ReverseToken string `json:"reverse_token,omitempty"`
}
