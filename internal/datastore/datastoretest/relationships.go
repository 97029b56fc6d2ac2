package datastoretest

import (
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

func (x suite) testRelationships(t *testing.T) {
	s, _ := x.openStore(t)
	ctx := t.Context()
	r := datastore.Relationship{
		TrustDomain: partnerTD, EndpointURLs: []string{"https://a.example", "https://b.example"},
		Profile: "https_spiffe", EndpointSPIFFEID: "spiffe://beta.test/spire/server",
		CreatedAt: time.Unix(10, 0), UpdatedAt: time.Unix(10, 0),
	}
	boot := &datastore.Bundle{TrustDomain: partnerTD, Document: []byte("boot-5"), Sequence: 5}
	stored, err := s.CreateRelationship(ctx, r, boot)
	require.NoError(t, err)
	require.True(t, stored, "no bundle yet: the bootstrap bundle is stored")
	_, err = s.CreateRelationship(ctx, r, nil)
	require.ErrorIs(t, err, datastore.ErrAlreadyExists)

	got, err := s.Relationship(ctx, partnerTD)
	require.NoError(t, err)
	require.Equal(t, r.EndpointURLs, got.EndpointURLs)
	require.Equal(t, "spiffe://beta.test/spire/server", got.EndpointSPIFFEID)

	// A fetched bundle with sequence 9 arrives; an older bootstrap bundle
	// must not replace it, a newer one may.
	require.NoError(t, s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: partnerTD, Document: []byte("fetched-9"), Sequence: 9}))
	r.UpdatedAt = time.Unix(20, 0)
	r.ManagedBy = "onboarding:beta.yaml"
	stored, err = s.UpdateRelationship(ctx, r, &datastore.Bundle{TrustDomain: partnerTD, Document: []byte("boot-7"), Sequence: 7})
	require.NoError(t, err)
	require.False(t, stored)
	stored, err = s.PutBootstrapBundle(ctx, datastore.Bundle{TrustDomain: partnerTD, Document: []byte("boot-9"), Sequence: 9})
	require.NoError(t, err)
	require.False(t, stored, "an equal sequence does not replace a fetched bundle")
	b, err := s.FederatedBundle(ctx, partnerTD)
	require.NoError(t, err)
	require.Equal(t, "fetched-9", string(b.Document))
	stored, err = s.PutBootstrapBundle(ctx, datastore.Bundle{TrustDomain: partnerTD, Document: []byte("boot-10"), Sequence: 10})
	require.NoError(t, err)
	require.True(t, stored)

	got, err = s.Relationship(ctx, partnerTD)
	require.NoError(t, err)
	require.Equal(t, time.Unix(10, 0).UTC(), got.CreatedAt, "update keeps the creation time")
	require.Equal(t, "onboarding:beta.yaml", got.ManagedBy)

	list, err := s.ListRelationships(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)

	_, err = s.UpdateRelationship(ctx, datastore.Relationship{TrustDomain: localTD, EndpointURLs: []string{"https://x"}, Profile: "https_web"}, nil)
	require.ErrorIs(t, err, datastore.ErrNotFound)
	require.NoError(t, s.DeleteRelationship(ctx, partnerTD))
	require.ErrorIs(t, s.DeleteRelationship(ctx, partnerTD), datastore.ErrNotFound)
	_, err = s.FederatedBundle(ctx, partnerTD)
	require.NoError(t, err, "deleting a relationship keeps the partner's bundle")
}

// A batch is one transaction, but a relationship that fails (here, one
// that exists already, and the same one twice in the batch) leaves the
// others, and its bootstrap bundle is not stored.
func (x suite) testCreateRelationshipsInOneBatch(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	rel := func(name string) datastore.Relationship {
		return datastore.Relationship{TrustDomain: spiffeid.RequireTrustDomainFromString(name), EndpointURLs: []string{"https://" + name}, Profile: "https_web"}
	}
	_, err := s.CreateRelationship(ctx, rel("old.test"), nil)
	require.NoError(t, err)
	n := 300 // more than one group commit's worth (256) on engines that group
	var rels []datastore.Relationship
	var boots []*datastore.Bundle
	for i := range n {
		rels = append(rels, rel(fmt.Sprintf("p%d.test", i)))
		boots = append(boots, nil)
	}
	rels = append(rels, rel("old.test"), rel("p1.test"))
	boots = append(boots,
		&datastore.Bundle{TrustDomain: spiffeid.RequireTrustDomainFromString("old.test"), Document: []byte("boot")}, nil)
	boots[3] = &datastore.Bundle{TrustDomain: rels[3].TrustDomain, Document: []byte("boot-3"), Sequence: 1}

	stored, errs := s.CreateRelationships(ctx, rels, boots)
	for i := range n {
		require.NoError(t, errs[i], "relationship %d", i)
		require.Equal(t, i == 3, stored[i])
	}
	require.ErrorIs(t, errs[n], datastore.ErrAlreadyExists)
	require.False(t, stored[n], "a failed create stores no bootstrap bundle")
	require.ErrorIs(t, errs[n+1], datastore.ErrAlreadyExists, "the same trust domain twice: the first wins")

	require.NoError(t, s.Close())
	s2, err := path.Open(t)
	require.NoError(t, err)
	defer s2.Close()
	all, err := s2.ListRelationships(ctx)
	require.NoError(t, err)
	require.Len(t, all, n+1)
	_, err = s2.FederatedBundle(ctx, spiffeid.RequireTrustDomainFromString("old.test"))
	require.ErrorIs(t, err, datastore.ErrNotFound)
	b, err := s2.FederatedBundle(ctx, rels[3].TrustDomain)
	require.NoError(t, err)
	require.Equal(t, "boot-3", string(b.Document))
}
