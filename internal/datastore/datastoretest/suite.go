// Package datastoretest is the datastore contract's conformance suite: the
// tests every engine (sqlite, postgres) must pass, the same tests for each,
// so that the rest of treaty may rely on the contract and not on an engine.
// An engine's own tests call Run with a way to make empty databases.
package datastoretest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlstore"
)

// DB is one database of the engine under test. Open opens a store on it;
// the suite opens it again to see what survived a close, and a test may
// hold two stores on it at once.
type DB interface {
	Open(t *testing.T) (datastore.Store, error)
}

// Run runs every conformance test against the engine whose empty databases
// newDB makes (one per test).
func Run(t *testing.T, newDB func(t *testing.T) DB) {
	x := suite{newDB: newDB}
	tests := []struct {
		name string
		run  func(*testing.T)
	}{
		{"OpenIsIdempotentAndRefusesNewerSchema", x.testOpenIsIdempotentAndRefusesNewerSchema},
		{"LocalBundleSequenceNeverGoesBackwards", x.testLocalBundleSequenceNeverGoesBackwards},
		{"CommitAuthoritiesIsAtomic", x.testCommitAuthoritiesIsAtomic},
		{"AuthorityRevisionGuardsChanges", x.testAuthorityRevisionGuardsChanges},
		{"FederatedBundles", x.testFederatedBundles},
		{"SequenceKeepsAll64Bits", x.testSequenceKeepsAll64Bits},
		{"ConcurrentLocalBundleCommitsNeverGoBackwards", x.testConcurrentLocalBundleCommitsNeverGoBackwards},
		{"Entries", x.testEntries},
		{"GroupedWritesKeepTheirOwnOutcome", x.testGroupedWritesKeepTheirOwnOutcome},
		{"GroupedWriteRefusesACancelledCaller", x.testGroupedWriteRefusesACancelledCaller},
		{"ConsumeJoinTokenOnce", x.testConsumeJoinTokenOnce},
		{"JoinTokenErrors", x.testJoinTokenErrors},
		{"ConsumeJoinTokenConcurrently", x.testConsumeJoinTokenConcurrently},
		{"PruneJoinTokens", x.testPruneJoinTokens},
		{"AttestedNodeLifecycle", x.testAttestedNodeLifecycle},
		{"AttestedNodeNotFoundAndAlreadyExists", x.testAttestedNodeNotFoundAndAlreadyExists},
		{"AttestedNodeSelectorsAreASet", x.testAttestedNodeSelectorsAreASet},
		{"BanAttestedNode", x.testBanAttestedNode},
		{"PromoteNewSerial", x.testPromoteNewSerial},
		{"Relationships", x.testRelationships},
		{"CreateRelationshipsInOneBatch", x.testCreateRelationshipsInOneBatch},
		{"Leases", x.testLeases},
		{"LeaseRaceHasOneWinner", x.testLeaseRaceHasOneWinner},
		{"SealedKeys", x.testSealedKeys},
		{"PollRecords", x.testPollRecords},
		{"Receipts", x.testReceipts},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

type suite struct {
	newDB func(t *testing.T) DB
}

// openStore opens a store on a new empty database; it is closed when the
// test ends.
func (x suite) openStore(t *testing.T) (datastore.Store, DB) {
	t.Helper()
	db := x.newDB(t)
	s, err := db.Open(t)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, db
}

// rawDB reaches under the contract to the tables, for the few checks that
// look at how a record is stored. Every engine is built on sqlstore.
func rawDB(t *testing.T, s datastore.Store) *sqlstore.DB {
	t.Helper()
	db, ok := s.(interface{ DB() *sqlstore.DB })
	require.True(t, ok, "%T is not built on sqlstore", s)
	return db.DB()
}
