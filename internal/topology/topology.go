// Package topology plans a SPIFFE federation before anything is deployed:
// from facts about one's own trust domain and each peer (organisation,
// agent, CA control, reachability, inspection, air gap, rotation cadence)
// it decides, by an explicit ordered rule table, whether federation is
// needed, how bundles are exchanged, which bundle endpoint profile to use,
// and what to use where SPIFFE does not reach.
package topology

// Reachability says which way connections can be opened between us and a
// peer.
type Reachability string

// Reachability values.
const (
	ReachBoth        Reachability = "both"          // either side can connect to the other
	ReachWeReachThem Reachability = "we_reach_them" // only we can connect out to them
	ReachTheyReachUs Reachability = "they_reach_us" // only they can connect in to us
	ReachNone        Reachability = "none"          // no network path (air gap, one-way diode)
)

// Inspection is what sits in front of a bundle endpoint.
type Inspection string

// Inspection values.
const (
	InspectNone     Inspection = "none"                  // TCP or TLS passthrough to the server
	InspectTLSProxy Inspection = "tls_terminating_proxy" // an ingress that terminates TLS
	InspectWAF      Inspection = "waf"                   // a web application firewall (terminates TLS)
)

// Rotation is how often a peer's CA or keys change.
type Rotation string

// Rotation values, most to least frequent.
const (
	RotateHours  Rotation = "hours"
	RotateDays   Rotation = "days"
	RotateWeeks  Rotation = "weeks"
	RotateMonths Rotation = "months"
	RotateYears  Rotation = "years"
	RotateManual Rotation = "manual"
)

// Self describes our own trust domain.
type Self struct {
	TrustDomain  string `json:"trust_domain"`
	Organisation string `json:"organisation,omitempty"`
	// Inspection is what sits in front of our bundle endpoint.
	Inspection Inspection `json:"inspection"`
	// PublicCertificate: our endpoint can get a certificate partners'
	// systems trust (a public or shared enterprise CA).
	PublicCertificate bool `json:"public_certificate"`
	Line              int  `json:"-"`
}

// Peer describes a system we must talk to.
type Peer struct {
	Name string `json:"name"`
	// TrustDomain is the peer's trust domain, if it has or will have one.
	TrustDomain      string `json:"trust_domain,omitempty"`
	SameOrganisation bool   `json:"same_organisation"`
	// RunsAgent: the peer can use the Workload API (a SPIFFE agent, a
	// SPIFFE library, or treaty on its host).
	RunsAgent bool `json:"runs_agent"`
	// ControlsCA: the peer runs its own CA; false means we issue its
	// credentials.
	ControlsCA   bool         `json:"controls_ca"`
	Reachability Reachability `json:"reachability"`
	// Inspection is what sits in front of the peer's bundle endpoint.
	Inspection Inspection `json:"inspection"`
	AirGapped  bool       `json:"air_gapped"`
	Rotation   Rotation   `json:"rotation"`
	// PublicCertificate: the peer's endpoint has a certificate our
	// systems trust.
	PublicCertificate bool `json:"public_certificate"`
	Line              int  `json:"-"`
}

// Topology is the planner's input.
type Topology struct {
	Self  Self   `json:"self"`
	Peers []Peer `json:"peers"`
}
