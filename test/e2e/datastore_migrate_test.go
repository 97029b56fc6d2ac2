package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/pgtest"
)

// TestDatastoreMigrateToPostgres grows a single node as the docs say: a
// server on SQLite with entries and a federation relationship, stopped;
// `treaty datastore migrate` into an empty PostgreSQL database; the same
// server, the same data_dir (its keys), on PostgreSQL, serving the same
// bundle, spiffe_sequence included, and the same entries and
// relationships.
func TestDatastoreMigrateToPostgres(t *testing.T) {
	s := newServer(t, "alpha.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n", freePort(t)))
	s.start()
	for _, id := range []string{"web", "db"} {
		s.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/"+id, "-selector", "unix:uid:100"+fmt.Sprint(len(id)),
			"-federatesWith", "spiffe://beta.test", "-dns", id+".alpha.test")
	}
	s.treaty("federation", "create", "-trustDomain", "beta.test", "-bundleEndpointURL", "https://beta.test:8443",
		"-bundleEndpointProfile", "https_web")
	bundle := s.treaty("bundle", "show", "-format", "spiffe")
	entries := s.treaty("entry", "show", "-output", "json")
	relationships := s.treaty("federation", "list", "-output", "json")

	c := pgtest.Start(t)
	dsn, err := c.CreateDatabase(t.Context())
	require.NoError(t, err)
	pwFile := filepath.Join(t.TempDir(), "db-password")
	require.NoError(t, os.WriteFile(pwFile, []byte(c.Password+"\n"), 0o600))
	migrate := []string{"datastore", "migrate", "-from", "sqlite:" + s.dataDir, "-to", "postgres:" + dsn, "-passwordFile", pwFile}

	_, stderr, err := runCmd(treatyBin, migrate...)
	require.Error(t, err, "a running server's data directory is refused")
	require.Contains(t, stderr, "stop the treaty server using "+s.dataDir+" first; the copy is offline")

	s.stop()
	out, stderr, err := runCmd(treatyBin, migrate...)
	require.NoError(t, err, "%s\n%s", out, stderr)
	require.Contains(t, out, "verified: the target holds the same")
	require.Contains(t, out, "driver: postgres")
	require.NotContains(t, out+stderr, c.Password)

	conf, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	sealFile := filepath.Join(t.TempDir(), "seal.key")
	require.NoError(t, os.WriteFile(sealFile, []byte(strings.Repeat("5e", 32)), 0o600))
	ha := fmt.Sprintf("datastore:\n  driver: postgres\n  dsn: %s\n  password_file: %s\nca:\n  key_seal_file: %s\n", dsn, pwFile, sealFile)
	_, err = fmt.Fprint(conf, ha)
	require.NoError(t, err)
	require.NoError(t, conf.Close())
	require.NoError(t, os.Rename(filepath.Join(s.dataDir, "treaty.db"), filepath.Join(s.dataDir, "treaty.db.sqlite-backup")),
		"the server must not read the SQLite file any more")
	s.start()

	require.Contains(t, s.log.String(), "datastore: PostgreSQL")
	served := s.treaty("bundle", "show", "-format", "spiffe")
	require.Equal(t, sequence(t, parseSPIFFE(t, "alpha.test", bundle)), sequence(t, parseSPIFFE(t, "alpha.test", served)))
	require.True(t, parseSPIFFE(t, "alpha.test", bundle).Equal(parseSPIFFE(t, "alpha.test", served)), "the same bundle")
	require.JSONEq(t, entries, s.treaty("entry", "show", "-output", "json"))
	require.JSONEq(t, relationships, s.treaty("federation", "list", "-output", "json"))
	s.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/after", "-selector", "unix:uid:2000")

	// The CA signs with the key it kept in data_dir/keys.
	dir := t.TempDir()
	s.treaty("x509", "mint", "-spiffeID", "spiffe://alpha.test/device/1", "-write", dir)
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	require.NoError(t, err)
	_, _, err = x509svid.Verify(svid.Certificates, parseSPIFFE(t, "alpha.test", bundle))
	require.NoError(t, err, "an SVID minted on PostgreSQL chains to the bundle published on SQLite")

	// The first start sealed the keys into the database: a second
	// replica, with a fresh data_dir and no key files, signs with the same
	// authority.
	second := newServer(t, "alpha.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n%s", freePort(t), ha))
	second.start()
	require.True(t, parseSPIFFE(t, "alpha.test", bundle).Equal(parseSPIFFE(t, "alpha.test", second.treaty("bundle", "show", "-format", "spiffe"))))
	dir = t.TempDir()
	second.treaty("x509", "mint", "-spiffeID", "spiffe://alpha.test/device/2", "-write", dir)
	svid, err = x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	require.NoError(t, err)
	_, _, err = x509svid.Verify(svid.Certificates, parseSPIFFE(t, "alpha.test", bundle))
	require.NoError(t, err, "the second replica signs with the authority the SQLite server created")
}
