package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	grpcinsecure "google.golang.org/grpc/credentials/insecure"
)

// scmVersion is the spire-controller-manager release tools/scm pins.
const scmVersion = "v0.6.4"

// scmBinary returns the spire-controller-manager built by
// tools/scm/build.sh, or skips (fails under TREATY_E2E=1) without it.
func scmBinary(t *testing.T) string {
	t.Helper()
	const name = "spire-controller-manager"
	candidates := []string{os.Getenv("TREATY_SCM")}
	if dir := os.Getenv("TREATY_SCM_DIR"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, name))
	}
	if cache, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(cache, "treaty", "scm-"+scmVersion, name))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := name + " not found: build it with tools/scm/build.sh (or set TREATY_SCM)"
	if strict {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// scmProcess is spire-controller-manager in static-manifest mode.
type scmProcess struct {
	log *syncBuffer
}

// startSCM runs spire-controller-manager against the admin API on socket,
// reconciling the manifests in dir. In static-manifest mode it re-reads the
// directory on every reconcile (each gcInterval), so a changed file needs no
// restart. Entries it creates get IDs "scm.<uuid>"; entries without that
// prefix are left alone.
func startSCM(t *testing.T, bin, td, socket, dir string) *scmProcess {
	t.Helper()
	conf := fmt.Sprintf(`apiVersion: spire.spiffe.io/v1alpha1
kind: ControllerManagerConfig
metrics:
  bindAddress: "0"
health:
  healthProbeBindAddress: "0"
trustDomain: %s
clusterName: e2e
clusterDomain: cluster.local
spireServerSocketPath: %s
staticManifestPath: %s
entryIDPrefix: scm
gcInterval: %d
`, td, socket, dir, time.Second)
	confFile := filepath.Join(t.TempDir(), "scm.yaml")
	require.NoError(t, os.WriteFile(confFile, []byte(conf), 0o600))
	p := &scmProcess{log: &syncBuffer{}}
	cmd := exec.CommandContext(context.Background(), bin, "-config", confFile)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	return p
}

// errors returns the lines the manager logged at error level.
func (p *scmProcess) errors() []string {
	var out []string
	for line := range strings.Lines(p.log.String()) {
		if strings.Contains(line, "\tERROR\t") {
			out = append(out, line)
		}
	}
	return out
}

// adminState is what spire-controller-manager manages on a server, read
// over its admin API and normalised so that treaty and spire-server can be
// compared: one line per relationship and per entry, sorted. Left out,
// because they differ between any two servers: entry IDs (only their
// "scm." prefix is kept), revision numbers, creation times, and the
// sequence number and refresh hint of a relationship's bundle (its X.509
// and JWT authorities are kept).
type adminState struct {
	Relationships []string
	Entries       []string
}

func readAdminState(ctx context.Context, socket string) (adminState, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(grpcinsecure.NewCredentials()))
	if err != nil {
		return adminState{}, err
	}
	defer conn.Close()
	var st adminState
	rels, err := trustdomainv1.NewTrustDomainClient(conn).ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{})
	if err != nil {
		return st, fmt.Errorf("list relationships: %w", err)
	}
	for _, r := range rels.GetFederationRelationships() {
		st.Relationships = append(st.Relationships, relationshipLine(r))
	}
	entries, err := entryv1.NewEntryClient(conn).ListEntries(ctx, &entryv1.ListEntriesRequest{})
	if err != nil {
		return st, fmt.Errorf("list entries: %w", err)
	}
	for _, e := range entries.GetEntries() {
		st.Entries = append(st.Entries, entryLine(e))
	}
	slices.Sort(st.Relationships)
	slices.Sort(st.Entries)
	return st, nil
}

func relationshipLine(r *types.FederationRelationship) string {
	prof := "https_web"
	if s := r.GetHttpsSpiffe(); s != nil {
		prof = "https_spiffe " + s.GetEndpointSpiffeId()
	}
	return fmt.Sprintf("%s %s %s bundle=%s", r.GetTrustDomain(), r.GetBundleEndpointUrl(), prof, authorities(r.GetTrustDomainBundle()))
}

// authorities names a bundle's authorities by short fingerprints.
func authorities(b *types.Bundle) string {
	if b == nil {
		return "none"
	}
	var keys []string
	for _, c := range b.GetX509Authorities() {
		sum := sha256.Sum256(c.GetAsn1())
		keys = append(keys, "x509:"+hex.EncodeToString(sum[:4]))
	}
	for _, k := range b.GetJwtAuthorities() {
		keys = append(keys, "jwt:"+k.GetKeyId())
	}
	slices.Sort(keys)
	return "[" + strings.Join(keys, ",") + "]"
}

func entryLine(e *types.Entry) string {
	id := func(p *types.SPIFFEID) string { return "spiffe://" + p.GetTrustDomain() + p.GetPath() }
	var sels []string
	for _, s := range e.GetSelectors() {
		sels = append(sels, s.GetType()+":"+s.GetValue())
	}
	slices.Sort(sels)
	fed := slices.Sorted(slices.Values(e.GetFederatesWith()))
	dns := slices.Sorted(slices.Values(e.GetDnsNames()))
	owner := "other"
	if strings.HasPrefix(e.GetId(), "scm.") {
		owner = "scm"
	}
	return fmt.Sprintf("%s id=%s parent=%s selectors=%v federatesWith=%v x509ttl=%d jwtttl=%d dns=%v hint=%q admin=%t downstream=%t storeSVID=%t",
		id(e.GetSpiffeId()), owner, id(e.GetParentId()), sels, fed, e.GetX509SvidTtl(), e.GetJwtSvidTtl(), dns, e.GetHint(), e.GetAdmin(), e.GetDownstream(), e.GetStoreSvid())
}

// waitState waits until the server on socket holds want.
func waitState(t *testing.T, who, socket string, want adminState, logs ...fmt.Stringer) {
	t.Helper()
	var got adminState
	var err error
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		got, err = readAdminState(t.Context(), socket)
		if err == nil && slices.Equal(got.Relationships, want.Relationships) && slices.Equal(got.Entries, want.Entries) {
			return
		}
		time.Sleep(200 * time.Millisecond) // the manager reconciles every second
	}
	var b strings.Builder
	for _, l := range logs {
		b.WriteString(l.String())
	}
	t.Fatalf("%s did not reach the declared state (err %v)\nwant relationships:\n  %s\ngot:\n  %s\nwant entries:\n  %s\ngot:\n  %s\nlogs:\n%s", who, err,
		strings.Join(want.Relationships, "\n  "), strings.Join(got.Relationships, "\n  "),
		strings.Join(want.Entries, "\n  "), strings.Join(got.Entries, "\n  "), b.String())
}

// manifests is a directory of ClusterFederatedTrustDomain and
// ClusterStaticEntry files, one object per file.
type manifests struct {
	t   *testing.T
	dir string
}

// put writes name atomically: the manager may read the directory at any
// moment, and skips names without the .yaml suffix.
func (m manifests) put(name, body string) {
	m.t.Helper()
	tmp := filepath.Join(m.dir, "."+name+".tmp")
	require.NoError(m.t, os.WriteFile(tmp, []byte(body), 0o600))
	require.NoError(m.t, os.Rename(tmp, filepath.Join(m.dir, name)))
}

func (m manifests) remove(name string) {
	m.t.Helper()
	require.NoError(m.t, os.Remove(filepath.Join(m.dir, name)))
}

func federatedTrustDomain(name, td, endpointURL, endpointID, bundleJSON string) string {
	prof := "    type: https_web\n"
	if endpointID != "" {
		prof = "    type: https_spiffe\n    endpointSPIFFEID: " + endpointID + "\n"
	}
	doc := fmt.Sprintf("apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterFederatedTrustDomain\nmetadata:\n  name: %s\nspec:\n  trustDomain: %s\n  bundleEndpointURL: %s\n  bundleEndpointProfile:\n%s",
		name, td, endpointURL, prof)
	if bundleJSON != "" {
		doc += "  trustDomainBundle: |-\n    " + bundleJSON + "\n"
	}
	return doc
}

func staticEntry(name, spec string) string {
	return fmt.Sprintf("apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: %s\nspec:\n%s", name, spec)
}

// scmPartnerBundle makes a SPIFFE bundle (JSON, one line) for td holding a
// fresh self-signed CA and a JWT key, and the line authorities() prints for
// it.
func scmPartnerBundle(t *testing.T, td string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse("spiffe://" + td)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: td}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	b := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(td), []*x509.Certificate{cert})
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	kid := td + "-jwt-1"
	require.NoError(t, b.AddJWTAuthority(kid, &jwtKey.PublicKey))
	b.SetSequenceNumber(1)
	doc, err := b.Marshal()
	require.NoError(t, err)
	return string(doc), authorities(&types.Bundle{X509Authorities: []*types.X509Certificate{{Asn1: der}}, JwtAuthorities: []*types.JWTKey{{KeyId: kid}}})
}

// TestSCMAgainstTreaty runs the real spire-controller-manager, unchanged, in
// static-manifest mode against treaty's admin socket, and the same files
// through a second manager against a real spire-server: relationships and
// entries appear, change when the files change and disappear when they are
// removed, both servers end in the same state at every step, a workload
// gets the SVID and partner bundle the files declare from treaty, and the
// manager working against treaty logs no error.
func TestSCMAgainstTreaty(t *testing.T) {
	scm := scmBinary(t)
	spireBin := spireServer(t)
	const td = "alpha.test"
	treaty := newServer(t, td, "")
	treaty.start()
	spire := startSPIRE(t, spireBin, td)

	// An entry made by hand: the managers own only entries whose IDs carry
	// their prefix, and must leave this one alone.
	treaty.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/manual", "-parentID", "spiffe://alpha.test/spire/server", "-selector", "unix:uid:4242")
	spire.cli("entry", "create", "-spiffeID", "spiffe://alpha.test/manual", "-parentID", "spiffe://alpha.test/spire/server", "-selector", "unix:uid:4242")
	manual := "spiffe://alpha.test/manual id=other parent=spiffe://alpha.test/spire/server selectors=[unix:uid:4242] federatesWith=[] x509ttl=0 jwtttl=0 dns=[] hint=\"\" admin=false downstream=false storeSVID=false"

	// Partner endpoints nobody answers: the servers keep the bundles from
	// the files.
	dead := "https://" + freePort(t)
	betaJSON, betaKeys := scmPartnerBundle(t, "beta.test")
	gammaJSON, gammaKeys := scmPartnerBundle(t, "gamma.test")

	m := manifests{t: t, dir: t.TempDir()}
	m.put("beta.yaml", federatedTrustDomain("beta", "beta.test", dead+"/beta", "spiffe://beta.test/spire/server", betaJSON))
	m.put("gamma.yaml", federatedTrustDomain("gamma", "gamma.test", dead+"/gamma", "", ""))
	m.put("web.yaml", staticEntry("web", `  spiffeID: spiffe://alpha.test/web
  parentID: spiffe://alpha.test/spire/agent/k8s_psat/e2e/node-1
  selectors: ["k8s:ns:web", "k8s:sa:web"]
  federatesWith: ["beta.test"]
  x509SVIDTTL: 1h
  jwtSVIDTTL: 5m
  dnsNames: ["web.alpha.test"]
  hint: web
`))
	m.put("db.yaml", staticEntry("db", `  spiffeID: spiffe://alpha.test/db
  parentID: spiffe://alpha.test/spire/server
  selectors: ["unix:uid:1001"]
  admin: true
`))
	// This test process, as a workload of treaty's.
	uid := strconv.Itoa(os.Getuid())
	m.put("self.yaml", staticEntry("self", `  spiffeID: spiffe://alpha.test/self
  parentID: spiffe://alpha.test/spire/server
  selectors: ["unix:uid:`+uid+`"]
  federatesWith: ["beta.test"]
`))
	self := "spiffe://alpha.test/self id=scm parent=spiffe://alpha.test/spire/server selectors=[unix:uid:" + uid + "] federatesWith=[beta.test] x509ttl=0 jwtttl=0 dns=[] hint=\"\" admin=false downstream=false storeSVID=false"
	require.NoError(t, os.WriteFile(filepath.Join(m.dir, "README.txt"), []byte("not a manifest: the manager reads *.yaml only\n"), 0o600))

	onTreaty := startSCM(t, scm, td, treaty.socket, m.dir)
	onSPIRE := startSCM(t, scm, td, spire.socket, m.dir)
	check := func(step string, want adminState) {
		t.Helper()
		waitState(t, step+": treaty", treaty.socket, want, onTreaty.log, treaty.log)
		waitState(t, step+": spire-server", spire.socket, want, onSPIRE.log)
		require.Empty(t, onTreaty.errors(), "%s: the manager logged errors against treaty", step)
	}

	// Created from the files.
	check("create", adminState{
		Relationships: []string{
			"beta.test " + dead + "/beta https_spiffe spiffe://beta.test/spire/server bundle=" + betaKeys,
			"gamma.test " + dead + "/gamma https_web bundle=none",
		},
		Entries: []string{
			"spiffe://alpha.test/db id=scm parent=spiffe://alpha.test/spire/server selectors=[unix:uid:1001] federatesWith=[] x509ttl=0 jwtttl=0 dns=[] hint=\"\" admin=true downstream=false storeSVID=false",
			manual,
			self,
			"spiffe://alpha.test/web id=scm parent=spiffe://alpha.test/spire/agent/k8s_psat/e2e/node-1 selectors=[k8s:ns:web k8s:sa:web] federatesWith=[beta.test] x509ttl=3600 jwtttl=300 dns=[web.alpha.test] hint=\"web\" admin=false downstream=false storeSVID=false",
		},
	})

	// The entry and the partner bundle declared in the files reach this
	// workload through treaty's Workload API.
	svidDir := t.TempDir()
	waitFor(t, func() bool {
		out, _, err := runCmd(treatyBin, "x509", "fetch", "-socketPath", treaty.workload, "-write", svidDir)
		return err == nil && strings.Contains(out, "spiffe://alpha.test/self")
	}, "no SVID for the entry from self.yaml:\n"+treaty.log.String())
	require.FileExists(t, filepath.Join(svidDir, "federated", "beta.test.pem"), "the bundle from beta.yaml")

	// Steady: what treaty lists back equals what the files declare, so the
	// manager finds nothing to update. Three reconciles (gcInterval 1 s)
	// would show a field that does not round-trip as an update each time.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		require.NotContains(t, onTreaty.log.String(), "Updated", "the manager keeps updating what it created on treaty")
	}

	// Changed with the files: gamma moves to https_spiffe at a new URL and brings a bundle
	// (spire-server refuses an entry federating with a trust domain it
	// holds no bundle for); web changes TTL, partners and names; db
	// goes; api comes.
	m.put("gamma.yaml", federatedTrustDomain("gamma", "gamma.test", dead+"/gamma/v2", "spiffe://gamma.test/spire/server", gammaJSON))
	m.put("web.yaml", staticEntry("web", `  spiffeID: spiffe://alpha.test/web
  parentID: spiffe://alpha.test/spire/agent/k8s_psat/e2e/node-1
  selectors: ["k8s:ns:web", "k8s:sa:web"]
  federatesWith: ["beta.test", "gamma.test"]
  x509SVIDTTL: 2h
  dnsNames: ["web.alpha.test", "www.alpha.test"]
  hint: web-v2
`))
	m.remove("db.yaml")
	m.put("api.yaml", staticEntry("api", `  spiffeID: spiffe://alpha.test/api
  parentID: spiffe://alpha.test/spire/server
  selectors: ["unix:uid:1002", "unix:gid:50"]
  downstream: true
`))
	check("change", adminState{
		Relationships: []string{
			"beta.test " + dead + "/beta https_spiffe spiffe://beta.test/spire/server bundle=" + betaKeys,
			"gamma.test " + dead + "/gamma/v2 https_spiffe spiffe://gamma.test/spire/server bundle=" + gammaKeys,
		},
		Entries: []string{
			"spiffe://alpha.test/api id=scm parent=spiffe://alpha.test/spire/server selectors=[unix:gid:50 unix:uid:1002] federatesWith=[] x509ttl=0 jwtttl=0 dns=[] hint=\"\" admin=false downstream=true storeSVID=false",
			manual,
			self,
			"spiffe://alpha.test/web id=scm parent=spiffe://alpha.test/spire/agent/k8s_psat/e2e/node-1 selectors=[k8s:ns:web k8s:sa:web] federatesWith=[beta.test gamma.test] x509ttl=7200 jwtttl=0 dns=[web.alpha.test www.alpha.test] hint=\"web-v2\" admin=false downstream=false storeSVID=false",
		},
	})

	// Removed with the files.
	for _, name := range []string{"beta.yaml", "gamma.yaml", "web.yaml", "api.yaml", "self.yaml"} {
		m.remove(name)
	}
	check("remove", adminState{Entries: []string{manual}})

	// The manager against treaty went through every kind of change, and
	// its field probe found that treaty keeps every field but storeSVID.
	log := onTreaty.log.String()
	for _, want := range []string{`New unsupported fields in SPIRE server found	{"fields": "storeSVID"}`, "Created federation relationship", "Updated federation relationship", "Deleted federation relationship",
		"Created entry", "Updated entry", "Deleted entry"} {
		require.Contains(t, log, want, "the manager's log against treaty")
	}
	require.Empty(t, onTreaty.errors(), "the manager logged errors against treaty")
}
