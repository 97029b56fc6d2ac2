package topology

import (
	"fmt"

	"github.com/treatyhq/treaty/internal/profile"
)

// Plan decides, for every peer, how its workloads and ours come to trust
// each other, by the rule table.
func Plan(t *Topology) []Decision {
	out := make([]Decision, 0, len(t.Peers))
	for i := range t.Peers {
		out = append(out, plan(t, &t.Peers[i]))
	}
	return out
}

func plan(t *Topology, p *Peer) Decision {
	d := Decision{Peer: p.Name, Warnings: []string{}, Outbound: Direction{Exchange: ExchangeNone}, Inbound: Direction{Exchange: ExchangeNone}}
	for _, stage := range []string{StageMechanism, StageExchange} {
		for _, r := range Rules {
			if r.Stage == stage && r.match(t, p, &d) {
				r.apply(t, p, &d)
				d.because(r)
				break
			}
		}
	}
	if d.Outbound.Exchange == ExchangeDynamic {
		r := profileRule(p.Inspection, p.PublicCertificate, p.SameOrganisation)
		d.Outbound.Profile = profileOf(r)
		d.Reasons = append(d.Reasons, Reason{Rule: r.ID, Text: "their endpoint, " + r.Then})
	}
	if d.Inbound.Exchange == ExchangeDynamic {
		r := profileRule(t.Self.Inspection, t.Self.PublicCertificate, p.SameOrganisation)
		d.Inbound.Profile = profileOf(r)
		d.Reasons = append(d.Reasons, Reason{Rule: r.ID, Text: "our endpoint, " + r.Then})
	}
	for _, r := range Rules {
		if r.Stage == StageWarning && r.match(t, p, &d) {
			r.apply(t, p, &d)
			d.Warnings[len(d.Warnings)-1] = r.ID + ": " + d.Warnings[len(d.Warnings)-1]
		}
	}
	d.NextSteps = nextSteps(t, p, &d)
	return d
}

// profileRule picks the profile rule for an endpoint.
func profileRule(inspection Inspection, publicCert, sameOrg bool) Rule {
	id := "R10"
	switch {
	case inspection == InspectTLSProxy || inspection == InspectWAF:
		id = "R8"
	case !sameOrg && publicCert:
		id = "R9"
	}
	for _, r := range Rules {
		if r.ID == id {
			return r
		}
	}
	panic("topology: no rule " + id)
}

func profileOf(r Rule) profile.Name {
	if r.ID == "R10" {
		return profile.HTTPSSPIFFE
	}
	return profile.HTTPSWeb
}

// nextSteps are the commands that carry out the decision.
func nextSteps(t *Topology, p *Peer, d *Decision) []string {
	td := d.TrustDomain
	switch d.Mechanism {
	case MechSameTrustDomain:
		return []string{fmt.Sprintf("treaty entry create -spiffeID spiffe://%s/%s -selector unix:user:%s", td, p.Name, p.Name)}
	case MechMintedSVID:
		return []string{
			fmt.Sprintf("on the device: openssl req -new -key device.key -subj /CN=%s -addext subjectAltName=URI:spiffe://%s/device/%s -out %s.csr", p.Name, td, p.Name, p.Name),
			fmt.Sprintf("treaty x509 mint -csr %s.csr -ttl 120h -write ./%s   # granted in full up to ca_ttl/6; repeat before half life", p.Name, p.Name),
		}
	case MechImportedCA:
		return []string{
			fmt.Sprintf("treaty bundle set -format pem -id spiffe://%s -path %s-ca.pem", td, p.Name),
			fmt.Sprintf("treaty entry create -spiffeID spiffe://%s/svc/<ours> -selector unix:user:<ours> -federatesWith spiffe://%s", t.Self.TrustDomain, td),
			fmt.Sprintf("give %s our CA: treaty bundle show -format pem > %s.pem", p.Name, t.Self.TrustDomain),
		}
	}
	return federationSteps(t, p, d)
}

func federationSteps(t *Topology, p *Peer, d *Decision) []string {
	td := d.TrustDomain
	var steps []string
	switch d.Outbound.Exchange {
	case ExchangeDynamic:
		create := fmt.Sprintf("treaty federation create -trustDomain %s -bundleEndpointURL https://<%s bundle endpoint> -bundleEndpointProfile %s", td, p.Name, d.Outbound.Profile)
		if d.Outbound.Profile == profile.HTTPSSPIFFE {
			create += fmt.Sprintf(" -endpointSpiffeID spiffe://%s/spire/server -trustDomainBundlePath %s.json -trustDomainBundleFormat spiffe", td, p.Name)
		}
		steps = append(steps, create)
	case ExchangeStatic:
		steps = append(steps, fmt.Sprintf("at each of %s's rotations: treaty bundle set -id spiffe://%s -path %s.json -format spiffe", p.Name, td, p.Name))
	}
	switch d.Inbound.Exchange {
	case ExchangeDynamic:
		msg := fmt.Sprintf("give %s our bundle endpoint URL (profile %s)", p.Name, d.Inbound.Profile)
		if d.Inbound.Profile == profile.HTTPSSPIFFE {
			msg += " and, once, our bundle: treaty bundle show -format spiffe"
		}
		steps = append(steps, msg)
	case ExchangeStatic:
		steps = append(steps, fmt.Sprintf("at each of our rotations: treaty bundle show -format spiffe > %s.json, and hand it to %s", t.Self.TrustDomain, p.Name))
	}
	return append(steps, fmt.Sprintf("treaty entry create ... -federatesWith spiffe://%s   # for our workloads that call %s", td, p.Name))
}
