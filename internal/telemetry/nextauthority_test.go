package telemetry

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
)

// coveredAuthorities are authorities that also say who has the prepared
// X.509 authority; no JWT key is prepared.
type coveredAuthorities struct {
	authorities
	cov      ca.Coverage
	prepared bool
}

func (a coveredAuthorities) NextAuthorityCoverage(_ context.Context, kind datastore.AuthorityKind) (ca.Coverage, bool, error) {
	return a.cov, a.prepared && kind == datastore.KindX509, nil
}

func TestNextAuthorityPartners(t *testing.T) {
	three := make([]datastore.Receipt, 3)
	for _, tc := range []struct {
		name     string
		prepared bool
		want     []string
		absent   string
	}{
		{"ok/prepared", true, []string{`treaty_authority_next_partners{has="yes",kind="x509"} 3`, `treaty_authority_next_partners{has="no",kind="x509"} 1`}, `treaty_authority_next_partners{has="yes",kind="jwt"}`},
		{"ok/nothing prepared, no series", false, nil, "treaty_authority_next_partners{"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Authorities: coveredAuthorities{
				authorities: authorities{},
				cov:         ca.Coverage{Have: three, Lack: make([]datastore.Receipt, 1)},
				prepared:    tc.prepared,
			}})
			code, body := get(t, s.http.Handler, "/metrics")
			require.Equal(t, http.StatusOK, code)
			for _, want := range tc.want {
				require.Contains(t, body, want)
			}
			if tc.absent != "" {
				require.NotContains(t, body, tc.absent)
			}
		})
	}
}
