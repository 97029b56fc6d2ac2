package topology

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Markdown renders the plan as a table, a Mermaid diagram and a section per
// peer with its reasons and next steps.
func Markdown(t *Topology, plan []Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Federation plan for %s\n\n", t.Self.TrustDomain)
	b.WriteString("| Peer | Trust domain | Federation | Their bundle to us | Our bundle to them | Mechanism | Rules |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, d := range plan {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(d.Peer), cell(d.TrustDomain), yesNo(d.Federation),
			direction(d.Outbound), direction(d.Inbound), mechanismName[d.Mechanism], ruleIDs(d))
	}
	b.WriteString("\n```mermaid\n")
	b.WriteString(Mermaid(t, plan))
	b.WriteString("```\n")
	for _, d := range plan {
		fmt.Fprintf(&b, "\n## %s\n\n", d.Peer)
		for _, r := range d.Reasons {
			fmt.Fprintf(&b, "- **%s**: %s\n", r.Rule, r.Text)
		}
		for _, w := range d.Warnings {
			fmt.Fprintf(&b, "- **warning**: %s\n", w)
		}
		b.WriteString("\nNext steps:\n\n```sh\n")
		for _, s := range d.NextSteps {
			b.WriteString(s + "\n")
		}
		b.WriteString("```\n")
	}
	return b.String()
}

var mechanismName = map[Mechanism]string{
	MechSameTrustDomain: "same trust domain (Workload API)",
	MechFederation:      "SPIFFE federation",
	MechMintedSVID:      "minted X509-SVIDs (no Workload API)",
	MechImportedCA:      "imported CA (static bundle)",
}

func direction(d Direction) string {
	switch d.Exchange {
	case ExchangeDynamic:
		return "dynamic, " + string(d.Profile)
	case ExchangeStatic:
		return "static (files)"
	}
	return "—"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ruleIDs(d Decision) string {
	var ids []string
	for _, w := range d.Warnings {
		d.Reasons = append(d.Reasons, Reason{Rule: strings.SplitN(w, ":", 2)[0]})
	}
	for _, r := range d.Reasons {
		if !slices.Contains(ids, r.Rule) {
			ids = append(ids, r.Rule)
		}
	}
	return strings.Join(ids, ", ")
}

// cell escapes a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Mermaid renders the plan as a Mermaid flowchart: us in the middle, an
// edge per peer labelled with its mechanism and profiles.
func Mermaid(t *Topology, plan []Decision) string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	fmt.Fprintf(&b, "  self[%s]\n", label(t.Self.TrustDomain+" (us)"))
	for i, d := range plan {
		id := fmt.Sprintf("p%d_%s", i+1, nodeID(d.Peer))
		fmt.Fprintf(&b, "  %s[%s]\n", id, label(d.Peer+"<br/>"+d.TrustDomain))
		fmt.Fprintf(&b, "  self ---|%s| %s\n", label(edgeLabel(d)), id)
	}
	return b.String()
}

func edgeLabel(d Decision) string {
	switch d.Mechanism {
	case MechFederation:
		// The table's column words: Outbound is the fetch from the peer,
		// their bundle to us; Inbound theirs from us.
		return fmt.Sprintf("federation: their bundle to us %s; our bundle to them %s", direction(d.Outbound), direction(d.Inbound))
	case MechImportedCA:
		return "imported CA"
	case MechMintedSVID:
		return "minted SVIDs"
	}
	return "same trust domain"
}

var unsafeID = regexp.MustCompile(`[^A-Za-z0-9_]`)

// nodeID makes a Mermaid node ID from a name.
func nodeID(s string) string { return unsafeID.ReplaceAllString(s, "_") }

// label quotes a Mermaid label, escaping what would end it.
func label(s string) string {
	s = strings.ReplaceAll(s, `"`, "#quot;")
	return `"` + s + `"`
}
