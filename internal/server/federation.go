package server

import (
	"slices"
	"strings"
	"time"

	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/workloadapi"
)

// federationView is the refresher as the admin API and telemetry see it,
// with one row more per federated bundle that no relationship refreshes
// (a device fleet's CA imported with bundle set), so their expiry is
// watched like any partner's.
type federationView struct {
	*federation.Refresher
	workload *workloadapi.Server
	now      func() time.Time
}

// Status returns the relationships' status and the static bundles'.
func (v federationView) Status() []federation.Status {
	out := v.Refresher.Status()
	related := map[string]bool{}
	for _, st := range out {
		related[st.TrustDomain] = true
	}
	if v.workload == nil {
		return out // no static bundles without the Workload API
	}
	for td, b := range v.workload.FederatedBundles() {
		if !related[td.Name()] {
			out = append(out, federation.StaticStatus(td, b, v.now()))
		}
	}
	slices.SortFunc(out, func(a, b federation.Status) int { return strings.Compare(a.TrustDomain, b.TrustDomain) })
	return out
}
