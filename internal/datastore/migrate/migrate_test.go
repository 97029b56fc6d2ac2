package migrate

import (
	"database/sql"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/postgres"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var (
	localTD   = spiffeid.RequireTrustDomainFromString("alpha.test")
	partnerTD = spiffeid.RequireTrustDomainFromString("beta.test")
	invitedTD = spiffeid.RequireTrustDomainFromString("gamma.test")
	// highSequence is above 2^63: stored by its bit pattern, negative as a
	// signed integer, in both engines.
	highSequence = uint64(1)<<63 + 5
	at           = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
)

// sqliteFile returns a data directory's database and lock, as a server
// leaves them.
func sqliteFile(t *testing.T) SQLiteFile {
	t.Helper()
	dir := t.TempDir()
	f := SQLiteFile{Path: filepath.Join(dir, "treaty.db"), Lock: filepath.Join(dir, "treaty.lock")}
	require.NoError(t, os.WriteFile(f.Lock, nil, 0o600))
	return f
}

// postgresConfig returns a new, empty database of the tests' cluster.
func postgresConfig(t *testing.T) postgres.Config {
	t.Helper()
	c, dsn := pgtest.NewDatabase(t)
	return postgres.Config{DSN: dsn, Password: c.Password}
}

// fill writes every kind of record through the datastore API.
func fill(t *testing.T, s datastore.Store) {
	t.Helper()
	ctx := t.Context()
	x509 := datastore.Authority{Kind: datastore.KindX509, ID: "aa", State: datastore.StateActive, KeyName: "x509-aa",
		CertificateChain: []byte{0x30, 0x82, 0, 1}, PublicKey: []byte{1, 2}, UpstreamSKID: "ff",
		NotBefore: at, NotAfter: at.Add(24 * time.Hour), PreparedAt: at, ActivatedAt: at}
	prepared := x509
	prepared.ID, prepared.State, prepared.KeyName, prepared.ActivatedAt = "bb", datastore.StatePrepared, "x509-bb", time.Time{}
	jwt := datastore.Authority{Kind: datastore.KindJWT, ID: "kid-1", State: datastore.StateActive, KeyName: "jwt-1",
		PublicKey: []byte{3}, NotBefore: at, NotAfter: at.Add(time.Hour), Tainted: true}
	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{
		Put: []datastore.Authority{x509, prepared, jwt},
		Journal: []datastore.JournalEvent{
			{At: at, Kind: datastore.KindX509, AuthorityID: "aa", Event: "activated"},
			{At: at, Kind: datastore.KindJWT, AuthorityID: "kid-1", Event: "tainted", Detail: "by an operator"},
		},
		LocalBundle: &datastore.Bundle{TrustDomain: localTD, Document: []byte(`{"keys":[]}`), Sequence: highSequence, UpdatedAt: at},
	}))
	require.NoError(t, s.CreateFederatedBundle(ctx, datastore.Bundle{TrustDomain: partnerTD, Document: []byte(`{"keys":[1]}`), Sequence: 7, UpdatedAt: at}))
	_, err := s.CreateRelationship(ctx, datastore.Relationship{TrustDomain: partnerTD, EndpointURLs: []string{"https://beta.test/bundle", "https://b2.beta.test/bundle"},
		Profile: "https_web", CreatedAt: at, UpdatedAt: at}, nil)
	require.NoError(t, err)
	require.NoError(t, s.JoinInvite(ctx, datastore.Relationship{TrustDomain: invitedTD, EndpointURLs: []string{"https://gamma.test:8443"},
		Profile: "https_spiffe", EndpointSPIFFEID: "spiffe://gamma.test/treaty", CreatedAt: at, UpdatedAt: at},
		datastore.Bundle{TrustDomain: invitedTD, Document: []byte(`{"keys":[2]}`), Sequence: 1, UpdatedAt: at}, "nonce-1"))
	for i, id := range []string{"spiffe://alpha.test/web", "spiffe://alpha.test/db"} {
		_, err := s.CreateEntry(ctx, datastore.Entry{SPIFFEID: spiffeid.RequireFromString(id), ParentID: spiffeid.RequireFromString("spiffe://alpha.test/agent"),
			Selectors: []datastore.Selector{{Type: "unix", Value: "uid:100" + string(rune('0'+i))}}, FederatesWith: []string{"beta.test"},
			X509SVIDTTL: time.Hour, JWTSVIDTTL: time.Minute, DNSNames: []string{"web.alpha.test"}, Hint: "h", Admin: i == 0, Downstream: i == 1,
			ExpiresAt: at.Add(time.Hour).Truncate(time.Second)})
		require.NoError(t, err)
	}
	_, err = s.CreateAttestedNode(ctx, datastore.AttestedNode{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/aa"),
		AttestationType: "x509pop", SerialNumber: "1001", NotAfter: at, NewSerialNumber: "2002", NewNotAfter: at.Add(time.Hour), CanReattest: true,
		Selectors: []datastore.Selector{{Type: "x509pop", Value: "subject:cn:node-1"}, {Type: "x509pop", Value: "ca:fingerprint:ab"}}, AgentVersion: "1.15.3"})
	require.NoError(t, err)
	_, err = s.CreateAttestedNode(ctx, datastore.AttestedNode{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/join_token/bb"),
		AttestationType: "join_token", NotAfter: at}) // banned: no serial
	require.NoError(t, err)
	require.NoError(t, s.CreateJoinToken(ctx, datastore.JoinToken{Token: "tok-1", ExpiresAt: at.Add(time.Hour)}))
	require.NoError(t, s.CreateJoinToken(ctx, datastore.JoinToken{Token: "tok-2", ExpiresAt: at.Add(2 * time.Hour)}))
	held, err := s.AcquireLease(ctx, "poll/beta.test", "replica-1", at, time.Minute)
	require.NoError(t, err)
	require.True(t, held)
	require.NoError(t, s.PutSealedKey(ctx, "x509-aa", []byte("sealed")))
	require.NoError(t, s.PutReceipts(ctx, []datastore.Receipt{{TrustDomain: partnerTD, Sequence: 3, FetchedAt: at}}))
	require.NoError(t, s.SavePollRecords(ctx, []datastore.PollRecord{{TrustDomain: partnerTD, LastAttempt: at, LastSuccess: at.Add(-time.Minute),
		ConsecutiveFailures: 1, LastError: "timeout", LastReason: "timeout"}}))
}

// records is everything a store holds, read through the datastore API.
type records struct {
	Authorities   []datastore.Authority
	Revision      uint64
	Journal       []datastore.JournalEvent
	LocalBundle   datastore.Bundle
	Federated     []datastore.Bundle
	Relationships []datastore.Relationship
	Entries       []datastore.Entry
	Nodes         []datastore.AttestedNode
	Lease         datastore.Lease
	SealedKey     []byte
	Receipts      []datastore.Receipt
	Polls         []datastore.PollRecord
}

func read(t *testing.T, s datastore.Store) records {
	t.Helper()
	ctx := t.Context()
	var r records
	var err error
	r.Authorities, err = s.ListAuthorities(ctx)
	require.NoError(t, err)
	r.Revision, err = s.AuthorityRevision(ctx)
	require.NoError(t, err)
	r.Journal, err = s.Journal(ctx, 100)
	require.NoError(t, err)
	r.LocalBundle, err = s.LocalBundle(ctx)
	require.NoError(t, err)
	r.Federated, err = s.ListFederatedBundles(ctx, "", 100)
	require.NoError(t, err)
	r.Relationships, err = s.ListRelationships(ctx)
	require.NoError(t, err)
	r.Entries, err = s.ListEntries(ctx)
	require.NoError(t, err)
	r.Nodes, err = s.ListAttestedNodes(ctx)
	require.NoError(t, err)
	r.Lease, err = s.Lease(ctx, "poll/beta.test")
	require.NoError(t, err)
	r.SealedKey, err = s.SealedKey(ctx, "x509-aa")
	require.NoError(t, err)
	r.Receipts, err = s.ListReceipts(ctx)
	require.NoError(t, err)
	r.Polls, err = s.ListPollRecords(ctx)
	require.NoError(t, err)
	return r
}

// filledSQLite returns a data directory's database holding every kind of
// record, and what the API reads from it.
func filledSQLite(t *testing.T) (SQLiteFile, records) {
	t.Helper()
	f := sqliteFile(t)
	s, err := sqlite.Open(t.Context(), f.Path)
	require.NoError(t, err)
	fill(t, s)
	want := read(t, s)
	require.NoError(t, s.Close())
	return f, want
}

func openSource(t *testing.T, f SQLiteFile) *Database {
	t.Helper()
	db, err := f.OpenSource(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func openPostgres(t *testing.T, cfg postgres.Config) *Database {
	t.Helper()
	db, err := OpenPostgres(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestTablesDescribeTheSchema(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) *Database{
		"ok/sqlite": func(t *testing.T) *Database {
			db, err := sqliteFile(t).OpenTarget(t.Context())
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			return db
		},
		"ok/postgres": func(t *testing.T) *Database { return openPostgres(t, postgresConfig(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, checkSchema(t.Context(), open(t)),
				"a migration changed the schema: describe its tables in schema (tables.go) so that migrate copies them")
		})
	}
}

// The records a SQLite node holds reach PostgreSQL unchanged, as the API
// reads them and row by row; the PostgreSQL store goes on from them (the
// journal's next event, the bundle's next sequence); and the copy comes
// back into SQLite unchanged too.
func TestCopySQLiteToPostgresAndBack(t *testing.T) {
	ctx := t.Context()
	src, want := filledSQLite(t)
	from := openSource(t, src)
	cfg := postgresConfig(t)
	to := openPostgres(t, cfg)

	res, err := Copy(ctx, from, to)
	require.NoError(t, err)
	require.Len(t, res.Tables, len(schema))
	for _, td := range res.Tables {
		require.Positive(t, td.Rows, "table %s: fill writes every kind of record", td.Table)
	}
	require.Equal(t, int64(24), res.Rows())
	sourceDigest, err := Digest(ctx, from)
	require.NoError(t, err)
	require.Equal(t, sourceDigest, res.Tables)

	pg, err := postgres.Open(ctx, cfg)
	require.NoError(t, err)
	defer pg.Close()
	require.Equal(t, want, read(t, pg))
	require.Equal(t, highSequence, read(t, pg).LocalBundle.Sequence)
	_, err = pg.ConsumeJoinToken(ctx, "tok-1")
	require.NoError(t, err)
	err = pg.JoinInvite(ctx, datastore.Relationship{TrustDomain: spiffeid.RequireTrustDomainFromString("delta.test"),
		EndpointURLs: []string{"https://delta.test"}, Profile: "https_web"}, datastore.Bundle{TrustDomain: localTD}, "nonce-1")
	require.ErrorIs(t, err, datastore.ErrInviteUsed)
	require.NoError(t, pg.CommitAuthorities(ctx, datastore.AuthorityChange{
		Journal:     []datastore.JournalEvent{{At: at, Kind: datastore.KindX509, AuthorityID: "bb", Event: "activated"}},
		LocalBundle: &datastore.Bundle{TrustDomain: localTD, Document: []byte(`{"keys":[3]}`), Sequence: highSequence + 1, UpdatedAt: at},
	}), "the journal's identity goes on after the copied events")
	journal, err := pg.Journal(ctx, 100)
	require.NoError(t, err)
	require.Len(t, journal, 3)

	back := sqliteFile(t)
	to2, err := back.OpenTarget(ctx)
	require.NoError(t, err)
	_, err = Copy(ctx, to, to2)
	require.NoError(t, err)
	require.NoError(t, to2.Close())
	s, err := sqlite.Open(ctx, back.Path)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, read(t, pg), read(t, s))
}

func TestCopyRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		prepare func(t *testing.T, src SQLiteFile, to *Database)
		want    []string
		// kept is how many records the target holds before and after.
		kept int64
	}{
		"fail/target holds records": {
			prepare: func(t *testing.T, _ SQLiteFile, to *Database) {
				exec(t, to, `INSERT INTO join_tokens (token, expires_at) VALUES ('t1', 1), ('t2', 1)`)
			},
			want: []string{"already holds 2 records (join_tokens: 2)", "migrate into an empty database"},
			kept: 2,
		},
		"fail/source schema older": {
			prepare: func(t *testing.T, src SQLiteFile, _ *Database) {
				db, err := sql.Open("sqlite", src.Path)
				require.NoError(t, err)
				defer db.Close()
				_, err = db.ExecContext(t.Context(), `DELETE FROM schema_version WHERE version = (SELECT MAX(version) FROM schema_version)`)
				require.NoError(t, err)
			},
			want: []string{"schema versions differ", "upgrade the source", "start a treaty server of that version on it once"},
		},
		"fail/target schema older": {
			prepare: func(t *testing.T, _ SQLiteFile, to *Database) {
				exec(t, to, `DELETE FROM schema_version WHERE version = (SELECT MAX(version) FROM schema_version)`)
			},
			want: []string{"schema versions differ", "upgrade the target"},
		},
		"fail/table unknown to this treaty": {
			prepare: func(t *testing.T, _ SQLiteFile, to *Database) {
				exec(t, to, `CREATE TABLE newer_records (id TEXT PRIMARY KEY)`)
			},
			want: []string{"holds table newer_records, which this treaty does not know how to copy"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			src, _ := filledSQLite(t)
			to := openPostgres(t, postgresConfig(t))
			tc.prepare(t, src, to)
			_, err := Copy(t.Context(), openSource(t, src), to)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			require.Equal(t, tc.kept, countRecords(t, to))
		})
	}
}

// A copy that fails part way leaves nothing behind: every table is
// copied in one transaction.
func TestCopyIsAllOrNothing(t *testing.T) {
	src, _ := filledSQLite(t)
	db, err := sql.Open("sqlite", src.Path)
	require.NoError(t, err)
	// PostgreSQL refuses a NUL character in text, SQLite keeps it; the
	// join tokens are copied after most other tables.
	_, err = db.ExecContext(t.Context(), `INSERT INTO join_tokens (token, expires_at) VALUES ('a' || char(0) || 'b', 1)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	to := openPostgres(t, postgresConfig(t))

	_, err = Copy(t.Context(), openSource(t, src), to)
	require.ErrorContains(t, err, "copy table join_tokens")
	require.Zero(t, countRecords(t, to))
}

func TestSourceRefusedWhileAServerRuns(t *testing.T) {
	src, _ := filledSQLite(t)
	held, err := os.OpenFile(src.Lock, os.O_RDWR, 0)
	require.NoError(t, err)
	defer held.Close()
	require.NoError(t, syscall.Flock(int(held.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))

	_, err = src.OpenSource(t.Context())
	require.ErrorContains(t, err, "stop the treaty server using "+filepath.Dir(src.Path)+" first; the copy is offline")

	require.NoError(t, syscall.Flock(int(held.Fd()), syscall.LOCK_UN))
	db := openSource(t, src)
	_, err = os.Stat(src.Lock)
	require.NoError(t, err)
	require.NoError(t, db.Close())
}

func TestSourceIsNotChanged(t *testing.T) {
	src, _ := filledSQLite(t)
	before, err := os.ReadFile(src.Path)
	require.NoError(t, err)
	_, err = Copy(t.Context(), openSource(t, src), openPostgres(t, postgresConfig(t)))
	require.NoError(t, err)
	after, err := os.ReadFile(src.Path)
	require.NoError(t, err)
	require.Equal(t, before, after)

	_, err = SQLiteFile{Path: filepath.Join(t.TempDir(), "treaty.db")}.OpenSource(t.Context())
	require.ErrorContains(t, err, "no treaty database at")
}

// Verify finds a target that differs from its source, whatever the
// difference, and says to start again from an empty database.
func TestVerifyFindsDifferences(t *testing.T) {
	for name, change := range map[string]string{
		"fail/value changed": `UPDATE bundles SET sequence = sequence + 1 WHERE local = 1`,
		"fail/row missing":   `DELETE FROM join_tokens WHERE token = 'tok-2'`,
		"fail/row added":     `INSERT INTO used_invites (nonce, trust_domain, used_at) VALUES ('n2', 'x.test', 1)`,
		"fail/empty for null": `UPDATE authorities SET certificate_chain = CASE WHEN certificate_chain IS NULL THEN ''::bytea ELSE NULL END
			WHERE kind = 'jwt'`,
	} {
		t.Run(name, func(t *testing.T) {
			src, _ := filledSQLite(t)
			from, to := openSource(t, src), openPostgres(t, postgresConfig(t))
			_, err := Copy(t.Context(), from, to)
			require.NoError(t, err)
			exec(t, to, change)

			_, err = Verify(t.Context(), from, to)
			var ve *VerifyError
			require.ErrorAs(t, err, &ve)
			require.Len(t, ve.Diffs, 1)
			require.ErrorContains(t, err, "drop the target database, create it afresh, and migrate again")
		})
	}
}

func exec(t *testing.T, db *Database, query string) {
	t.Helper()
	_, err := db.db.ExecContext(t.Context(), query)
	require.NoError(t, err)
}

// countRecords counts the rows of db's tables but the seeded ones.
func countRecords(t *testing.T, db *Database) int64 {
	t.Helper()
	tables, err := Digest(t.Context(), db)
	require.NoError(t, err)
	var n int64
	for i, td := range tables {
		if !schema[i].seeded {
			n += td.Rows
		}
	}
	return n
}
