package dashboard

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
)

func TestPage(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h := Handler(Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("alpha.test"),
		Authorities: func(kind datastore.AuthorityKind) []ca.AuthorityInfo {
			return []ca.AuthorityInfo{{ID: "id-" + string(kind), State: datastore.StateActive, NotBefore: now.Add(-time.Hour), ExpiresAt: now.Add(3 * time.Hour)}}
		},
		Federation: func() []federation.Status {
			return []federation.Status{
				{TrustDomain: "beta.test", State: federation.StateHealthy, HasBundle: true, Sequence: 4},
				{TrustDomain: "evil.test", State: federation.StateStale, LastError: `<script>alert("x")</script>`},
			}
		},
		Journal: func(context.Context, int) ([]datastore.JournalEvent, error) {
			return []datastore.JournalEvent{{At: now, Kind: datastore.KindX509, AuthorityID: "id-x509", Event: "activated"}}, nil
		},
		Gaps: func() int { return 1 },
		Now:  func() time.Time { return now },
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	page := string(body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'", "no external assets, no scripts")
	require.Contains(t, page, `<tr class="partner" data-trust-domain="beta.test" data-state="healthy">`)
	require.Contains(t, page, `data-trust-domain="evil.test" data-state="stale"`)
	require.NotContains(t, page, "<script>", "partner errors are escaped")
	require.Contains(t, page, `<tr class="authority" data-kind="x509" data-state="active">`)
	require.Contains(t, page, `style="width: 25%"`, "an hour of four has passed")
	require.Contains(t, page, "1 entry federation gap(s)")
	require.Contains(t, page, "activated <code>id-x509</code>")
	require.NotContains(t, page, "http://", "no external assets")
	require.NotContains(t, page, "https://")
}
