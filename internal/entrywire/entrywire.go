// Package entrywire converts registration entries to SPIRE's API type
// (spire-api-sdk types.Entry) for both APIs that serve them: the admin
// API's Entry service and the agent API's authorized entries.
package entrywire

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/treatyhq/treaty/internal/datastore"
)

// ToProto converts e, keeping the fields in mask (nil: all). treaty stores
// no SVIDs, so store_svid is always false; times that are not set are 0.
func ToProto(e datastore.Entry, mask *types.EntryMask) *types.Entry {
	all := mask == nil
	out := &types.Entry{Id: e.ID}
	if all || mask.GetSpiffeId() {
		out.SpiffeId = IDToProto(e.SPIFFEID)
	}
	if all || mask.GetParentId() {
		out.ParentId = IDToProto(e.ParentID)
	}
	if all || mask.GetSelectors() {
		out.Selectors = make([]*types.Selector, 0, len(e.Selectors))
		for _, s := range e.Selectors {
			out.Selectors = append(out.Selectors, &types.Selector{Type: s.Type, Value: s.Value})
		}
	}
	if all || mask.GetFederatesWith() {
		out.FederatesWith = e.FederatesWith
	}
	if all || mask.GetX509SvidTtl() {
		out.X509SvidTtl = int32(e.X509SVIDTTL / time.Second) //nolint:gosec // validated on the way in
	}
	if all || mask.GetJwtSvidTtl() {
		out.JwtSvidTtl = int32(e.JWTSVIDTTL / time.Second) //nolint:gosec // validated on the way in
	}
	if all || mask.GetDnsNames() {
		out.DnsNames = e.DNSNames
	}
	if all || mask.GetHint() {
		out.Hint = e.Hint
	}
	if all || mask.GetAdmin() {
		out.Admin = e.Admin
	}
	if all || mask.GetDownstream() {
		out.Downstream = e.Downstream
	}
	if all || mask.GetExpiresAt() {
		out.ExpiresAt = UnixOrZero(e.ExpiresAt)
	}
	if all || mask.GetRevisionNumber() {
		out.RevisionNumber = e.RevisionNumber
	}
	if all || mask.GetCreatedAt() {
		out.CreatedAt = UnixOrZero(e.CreatedAt)
	}
	return out
}

// IDToProto converts a SPIFFE ID; nil for the zero ID.
func IDToProto(id spiffeid.ID) *types.SPIFFEID {
	if id.IsZero() {
		return nil
	}
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// UnixOrZero is t in Unix seconds, 0 when t is not set (an agent compares
// creation times to tell a recreated entry).
func UnixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
