package federation

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/profile"
)

// FromRecord converts a stored relationship. The bootstrap bundle is not
// part of the record: it lives with the other bundles.
func FromRecord(rec datastore.Relationship) (Relationship, error) {
	r := Relationship{TrustDomain: rec.TrustDomain, ManagedBy: rec.ManagedBy}
	var err error
	if r.Profile, err = profile.Parse(rec.Profile); err != nil {
		return r, err
	}
	for _, raw := range rec.EndpointURLs {
		u, err := url.Parse(raw)
		if err != nil {
			return r, fmt.Errorf("relationship with %q: endpoint URL %q: %w", rec.TrustDomain.Name(), raw, err)
		}
		r.BundleEndpointURLs = append(r.BundleEndpointURLs, u)
	}
	if rec.EndpointSPIFFEID != "" {
		if r.EndpointSPIFFEID, err = spiffeid.FromString(rec.EndpointSPIFFEID); err != nil {
			return r, fmt.Errorf("relationship with %q: endpoint SPIFFE ID: %w", rec.TrustDomain.Name(), err)
		}
	}
	return r, nil
}

// Record converts r for storage, stamped with now.
func (r *Relationship) Record(now time.Time) datastore.Relationship {
	rec := datastore.Relationship{
		TrustDomain: r.TrustDomain, Profile: string(r.Profile), ManagedBy: r.ManagedBy,
		CreatedAt: now, UpdatedAt: now,
	}
	for _, u := range r.BundleEndpointURLs {
		rec.EndpointURLs = append(rec.EndpointURLs, u.String())
	}
	if !r.EndpointSPIFFEID.IsZero() {
		rec.EndpointSPIFFEID = r.EndpointSPIFFEID.String()
	}
	return rec
}

// Equal reports whether two relationships describe the same partner setup
// (the bootstrap bundle is not compared).
func (r *Relationship) Equal(o *Relationship) bool {
	if r.TrustDomain != o.TrustDomain || r.Profile != o.Profile || r.EndpointSPIFFEID != o.EndpointSPIFFEID ||
		r.ManagedBy != o.ManagedBy || len(r.BundleEndpointURLs) != len(o.BundleEndpointURLs) {
		return false
	}
	for i := range r.BundleEndpointURLs {
		if r.BundleEndpointURLs[i].String() != o.BundleEndpointURLs[i].String() {
			return false
		}
	}
	return true
}
