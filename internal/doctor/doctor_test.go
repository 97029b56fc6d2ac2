package doctor

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/testpki"
)

var td = spiffeid.RequireTrustDomainFromString("alpha.test")

// authority is the little of the CA the endpoint check reads.
type authority struct{ b *spiffebundle.Bundle }

func (a authority) TrustDomain() spiffeid.TrustDomain      { return td }
func (a authority) Bundle() *spiffebundle.Bundle           { return a.b }
func (a authority) State(datastore.AuthorityKind) ca.State { return ca.State{} }

// TestEndpointWithPrivateCA: an https_web endpoint whose certificate comes
// from a private CA passes once the CA is among EndpointRoots (the
// server's federation.ca_file), and fails with the failed step's cause,
// not a pointer to steps the line does not show.
func TestEndpointWithPrivateCA(t *testing.T) {
	b := spiffebundle.New(td)
	b.AddX509Authority(testpki.CACert(t, "spiffe://alpha.test"))
	doc, err := bundle.Marshal(b)
	require.NoError(t, err)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	defer srv.Close()
	private := x509.NewCertPool()
	private.AddCert(srv.Certificate())

	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
		sev   finding.Severity
		msg   string
	}{
		{"fail/system roots only", nil, finding.Fail, "certificate signed by unknown authority"},
		{"ok/private CA in federation.ca_file", private, finding.Pass, "answers as https_web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Doctor{CA: authority{b}, EndpointURL: srv.URL, EndpointProfile: "https_web", EndpointRoots: tc.roots}
			got := d.endpoint(t.Context())
			require.Equal(t, tc.sev, got.Severity, got.Message)
			require.Contains(t, got.Message, tc.msg)
			require.NotContains(t, got.Message, "see the failed steps")
		})
	}
}

// TestRelationshipsSayWhy: the warn line for a failing partner carries its
// last error, as the fail line for a stale one does.
func TestRelationshipsSayWhy(t *testing.T) {
	d := &Doctor{Federation: func() []federation.Status {
		return []federation.Status{{TrustDomain: "beta.test", State: federation.StateFailing, LastError: "connection refused"}}
	}}
	got := d.relationships()
	require.Equal(t, finding.Warn, got.Severity)
	require.Equal(t, "beta.test (failing: connection refused)", got.Message)
}

func TestNextAuthority(t *testing.T) {
	now := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	globex := datastore.Receipt{TrustDomain: spiffeid.RequireTrustDomainFromString("globex.test"), Sequence: 41, FetchedAt: now.Add(-26 * time.Hour)}
	acme := datastore.Receipt{TrustDomain: spiffeid.RequireTrustDomainFromString("acme.test"), Sequence: 42, FetchedAt: now}
	for _, tc := range []struct {
		name     string
		cov      ca.Coverage
		prepared bool
		severity finding.Severity
		message  string
	}{
		{"ok/nothing prepared", ca.Coverage{}, false, finding.Pass, "no authority is prepared"},
		{"ok/all have it", ca.Coverage{AuthorityID: "ab", Sequence: 42, Have: []datastore.Receipt{acme}}, true, finding.Pass, "all 1 partners with receipts have"},
		{"warn/a partner lacks it", ca.Coverage{AuthorityID: "ab", Sequence: 42, Have: []datastore.Receipt{acme}, Lack: []datastore.Receipt{globex}}, true, finding.Warn,
			"1/2 partners have the next X.509 authority ab (sequence 42); lacking: globex.test (last fetched sequence 41, 26h0m0s ago)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Doctor{Now: func() time.Time { return now }, NextAuthority: func(_ context.Context, kind datastore.AuthorityKind) (ca.Coverage, bool, error) {
				if kind == datastore.KindJWT {
					return ca.Coverage{}, false, nil
				}
				return tc.cov, tc.prepared, nil
			}}
			f := d.nextAuthority(t.Context())
			require.Equal(t, tc.severity, f.Severity)
			require.Contains(t, f.Message, tc.message)
			require.Equal(t, "docs/doctor.md#next-authority", f.Doc)
		})
	}
}
