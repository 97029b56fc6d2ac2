package topology

import (
	"fmt"

	"github.com/treatyhq/treaty/internal/profile"
)

// Mechanism is how a peer's workloads and ours come to trust each other.
type Mechanism string

// Mechanisms.
const (
	MechSameTrustDomain Mechanism = "same_trust_domain" // one CA; entries for both sides
	MechFederation      Mechanism = "federation"        // SPIFFE federation between two trust domains
	MechMintedSVID      Mechanism = "minted_svid"       // SVIDs minted from a CSR for a device without the Workload API
	MechImportedCA      Mechanism = "imported_ca"       // the peer's CA imported as a static bundle
)

// Exchange is how bundles travel in one direction.
type Exchange string

// Exchanges.
const (
	ExchangeNone    Exchange = "none"    // nothing to exchange
	ExchangeDynamic Exchange = "dynamic" // fetched from a bundle endpoint, refreshed automatically
	ExchangeStatic  Exchange = "static"  // carried by hand as a file at every rotation
)

// Direction is one way bundles travel: Outbound is the peer's bundle
// coming to us (we verify them), Inbound ours going to them.
type Direction struct {
	Exchange Exchange `json:"exchange"`
	// Profile is the bundle endpoint profile for a dynamic exchange.
	Profile profile.Name `json:"profile,omitempty"`
}

// Decision is the plan for one peer.
type Decision struct {
	Peer        string    `json:"peer"`
	TrustDomain string    `json:"trust_domain"`
	Mechanism   Mechanism `json:"mechanism"`
	Federation  bool      `json:"federation"`
	// Outbound: the peer's bundle to us; Inbound: ours to the peer.
	Outbound  Direction `json:"outbound"`
	Inbound   Direction `json:"inbound"`
	Reasons   []Reason  `json:"reasons"`
	Warnings  []string  `json:"warnings"`
	NextSteps []string  `json:"next_steps"`
}

// Reason is a rule that shaped a decision.
type Reason struct {
	Rule string `json:"rule"`
	Text string `json:"text"`
}

func (d *Decision) because(r Rule) {
	d.Reasons = append(d.Reasons, Reason{Rule: r.ID, Text: r.Then})
}

// Rule is one line of the planner's rule table. Rules are tried in order;
// within each stage (mechanism, exchange, profile, warnings) the first
// that matches decides.
type Rule struct {
	ID    string
	Stage string
	// When and Then are the rule in words; docs/topology.md lists them
	// and a test keeps the two in step.
	When  string
	Then  string
	match func(t *Topology, p *Peer, d *Decision) bool
	apply func(t *Topology, p *Peer, d *Decision)
}

// Stages of the rule table, in order.
const (
	StageMechanism = "mechanism"
	StageExchange  = "exchange"
	StageProfile   = "profile"
	StageWarning   = "warning"
)

// Rules is the planner's rule table.
var Rules = []Rule{
	{
		ID: "R1", Stage: StageMechanism,
		When: "the peer is in our trust domain",
		Then: "no federation: one CA issues both sides' SVIDs; register the peer's workloads as entries",
		match: func(t *Topology, p *Peer, _ *Decision) bool {
			return p.TrustDomain != "" && p.TrustDomain == t.Self.TrustDomain
		},
		apply: func(t *Topology, _ *Peer, d *Decision) {
			d.Mechanism, d.TrustDomain = MechSameTrustDomain, t.Self.TrustDomain
		},
	},
	{
		ID: "R2", Stage: StageMechanism,
		When:  "the peer cannot use the Workload API and does not run its own CA",
		Then:  "SPIFFE's Workload API does not reach it: mint long-lived X509-SVIDs in our trust domain from a CSR made on the device, and re-mint before half their life (no automatic rotation)",
		match: func(_ *Topology, p *Peer, _ *Decision) bool { return !p.RunsAgent && !p.ControlsCA },
		apply: func(t *Topology, _ *Peer, d *Decision) {
			d.Mechanism, d.TrustDomain = MechMintedSVID, t.Self.TrustDomain
		},
	},
	{
		ID: "R3", Stage: StageMechanism,
		When:  "the peer cannot use the Workload API but runs its own CA",
		Then:  "import its CA certificates as a static bundle of its own trust domain, let our entries federate with it, and watch its expiry (it is not refreshed)",
		match: func(_ *Topology, p *Peer, _ *Decision) bool { return !p.RunsAgent && p.ControlsCA },
		apply: func(_ *Topology, p *Peer, d *Decision) {
			d.Mechanism, d.TrustDomain = MechImportedCA, peerTrustDomain(p)
			d.Outbound, d.Inbound = Direction{Exchange: ExchangeStatic}, Direction{Exchange: ExchangeStatic}
		},
	},
	{
		ID: "R4", Stage: StageMechanism,
		When:  "the peer can use the Workload API and is in another trust domain",
		Then:  "federate: each side keeps its own CA and fetches the other's public bundle, so neither can issue the other's identities",
		match: func(*Topology, *Peer, *Decision) bool { return true },
		apply: func(_ *Topology, p *Peer, d *Decision) {
			d.Mechanism, d.Federation, d.TrustDomain = MechFederation, true, peerTrustDomain(p)
		},
	},
	{
		ID: "R5", Stage: StageExchange,
		When: "federating with a peer that is air-gapped or has no network path to us",
		Then: "static exchange both ways: carry bundle files across (bundle show -format spiffe, then bundle set) at every rotation",
		match: func(_ *Topology, p *Peer, d *Decision) bool {
			return d.Federation && (p.AirGapped || p.Reachability == ReachNone)
		},
		apply: func(_ *Topology, _ *Peer, d *Decision) {
			d.Outbound, d.Inbound = Direction{Exchange: ExchangeStatic}, Direction{Exchange: ExchangeStatic}
		},
	},
	{
		ID: "R6", Stage: StageExchange,
		When: "federating when only one side can open connections to the other",
		Then: "dynamic exchange in the direction that can connect, static in the other",
		match: func(_ *Topology, p *Peer, d *Decision) bool {
			return d.Federation && (p.Reachability == ReachWeReachThem || p.Reachability == ReachTheyReachUs)
		},
		apply: func(_ *Topology, p *Peer, d *Decision) {
			d.Outbound, d.Inbound = Direction{Exchange: ExchangeStatic}, Direction{Exchange: ExchangeStatic}
			if p.Reachability == ReachWeReachThem {
				d.Outbound.Exchange = ExchangeDynamic
			} else {
				d.Inbound.Exchange = ExchangeDynamic
			}
		},
	},
	{
		ID: "R7", Stage: StageExchange,
		When:  "federating when both sides can reach each other's bundle endpoints",
		Then:  "dynamic exchange both ways: each side polls the other's bundle endpoint, and rotations propagate by themselves",
		match: func(_ *Topology, _ *Peer, d *Decision) bool { return d.Federation },
		apply: func(_ *Topology, _ *Peer, d *Decision) {
			d.Outbound, d.Inbound = Direction{Exchange: ExchangeDynamic}, Direction{Exchange: ExchangeDynamic}
		},
	},
	{
		ID: "R8", Stage: StageProfile,
		When: "a TLS-terminating proxy or WAF sits in front of the bundle endpoint",
		Then: "https_web: https_spiffe needs the endpoint's own TLS end to end (passthrough), which an inspecting ingress breaks",
	},
	{
		ID: "R9", Stage: StageProfile,
		When: "the sides are in different organisations and the endpoint can get a certificate the other side trusts",
		Then: "https_web: the partner onboards with the URL alone, no bootstrap bundle to exchange",
	},
	{
		ID: "R10", Stage: StageProfile,
		When: "otherwise (same organisation, or no certificate the other side trusts)",
		Then: "https_spiffe: no dependency on public CAs; the bundle is exchanged once, then rotations travel over the endpoint",
	},
	{
		ID: "R11", Stage: StageWarning,
		When: "bundles are exchanged statically with a peer whose CA rotates hourly, daily or weekly",
		Then: "warn: a static bundle goes stale at every rotation; find a network path for dynamic exchange, or slow the peer's rotation",
		match: func(_ *Topology, p *Peer, d *Decision) bool {
			frequent := p.Rotation == RotateHours || p.Rotation == RotateDays || p.Rotation == RotateWeeks
			return frequent && (d.Outbound.Exchange == ExchangeStatic || d.Inbound.Exchange == ExchangeStatic)
		},
		apply: func(_ *Topology, p *Peer, d *Decision) {
			d.Warnings = append(d.Warnings, fmt.Sprintf("bundles go stale at every rotation (every few %s): a static exchange means carrying files that often", p.Rotation))
		},
	},
	{
		ID: "R12", Stage: StageWarning,
		When: "SVIDs are minted for a device that is air-gapped or that we cannot reach",
		Then: "warn: re-minting needs a way to get a CSR out and a certificate in before expiry; plan that channel (or a longer CA lifetime) up front",
		match: func(_ *Topology, p *Peer, d *Decision) bool {
			return d.Mechanism == MechMintedSVID && (p.AirGapped || p.Reachability == ReachNone || p.Reachability == ReachTheyReachUs)
		},
		apply: func(_ *Topology, _ *Peer, d *Decision) {
			d.Warnings = append(d.Warnings, "re-minting needs an offline channel for CSRs and certificates before each SVID's half life")
		},
	},
}

// peerTrustDomain is the peer's trust domain, or a suggestion.
func peerTrustDomain(p *Peer) string {
	if p.TrustDomain != "" {
		return p.TrustDomain
	}
	return p.Name + ".example (choose one)"
}
