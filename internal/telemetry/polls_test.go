package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/workloadapi"
)

// fetcher answers each fetch with the next of errs (nil: success).
type fetcher struct{ errs []error }

func (f *fetcher) Fetch(context.Context, federation.Relationship, *url.URL, *spiffebundle.Bundle) (*bundle.Result, error) {
	err := f.errs[0]
	f.errs = f.errs[1:]
	return &bundle.Result{}, err
}

type authorities map[datastore.AuthorityKind]ca.State

func (a authorities) State(kind datastore.AuthorityKind) ca.State { return a[kind] }

func TestOwnAndWorkloadMetrics(t *testing.T) {
	polls := NewPolls()
	f := polls.Wrap(&fetcher{errs: []error{nil, errors.New("refused"), errors.New("refused")}})
	rel := federation.Relationship{TrustDomain: spiffeid.RequireTrustDomainFromString("beta.test")}
	for range 3 {
		_, _ = f.Fetch(t.Context(), rel, nil, nil)
	}
	expiry := time.Unix(1_900_000_000, 0)
	s := New(Config{
		Polls: polls,
		Authorities: authorities{
			datastore.KindX509: {Active: &ca.AuthorityInfo{ExpiresAt: expiry}, Prepared: &ca.AuthorityInfo{ExpiresAt: expiry.Add(time.Hour)}},
			datastore.KindJWT:  {Active: &ca.AuthorityInfo{ExpiresAt: expiry}},
		},
		Workload: func() workloadapi.Stats { return workloadapi.Stats{Streams: 4, X509SVIDsIssued: 9, JWTSVIDsIssued: 2} },
	})
	code, body := get(t, s.http.Handler, "/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`treaty_federation_polls_total{result="success",trust_domain="beta.test"} 1`,
		`treaty_federation_polls_total{result="failure",trust_domain="beta.test"} 2`,
		`treaty_authority_expiry_timestamp_seconds{kind="x509",state="active"} 1.9e+09`,
		`treaty_authority_expiry_timestamp_seconds{kind="x509",state="prepared"} 1.9000036e+09`,
		`treaty_authority_prepared{kind="x509"} 1`,
		`treaty_authority_prepared{kind="jwt"} 0`,
		`treaty_build_info{goversion="go`,
		`treaty_workload_streams 4`,
		`treaty_workload_svids_issued_total{kind="x509"} 9`,
		`treaty_workload_svids_issued_total{kind="jwt"} 2`,
	} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, `state="old"`, "no old authority, no series")
}
