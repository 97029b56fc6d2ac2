package datastore

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Receipt records that a partner trust domain fetched the local bundle
// from the bundle endpoint, authenticated by an X509-SVID of its own trust
// domain: when it last did, and which bundle it was served.
type Receipt struct {
	TrustDomain spiffeid.TrustDomain
	// Sequence is the spiffe_sequence of the bundle served at FetchedAt.
	Sequence  uint64
	FetchedAt time.Time
}
