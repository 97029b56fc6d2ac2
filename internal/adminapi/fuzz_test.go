package adminapi

import (
	"log/slog"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/entrywire"
)

// FuzzRequestConversion decodes arbitrary protobuf as the entries and
// bundles clients send, and converts them as the services do: no input may
// panic, an entry or bundle that is accepted must convert back unchanged,
// and a refused bundle converts to nothing.
func FuzzRequestConversion(f *testing.F) {
	entry, _ := proto.Marshal(&types.Entry{
		SpiffeId:      &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/svc"},
		Selectors:     []*types.Selector{{Type: "unix", Value: "uid:1000"}},
		FederatesWith: []string{"beta.test", "*"}, X509SvidTtl: 60, DnsNames: []string{"a.test"},
	})
	f.Add(entry)
	bundle, _ := proto.Marshal(&types.Bundle{TrustDomain: "beta.test", X509Authorities: []*types.X509Certificate{{Asn1: []byte{0x30}}}})
	f.Add(bundle)
	s := &entryService{local: spiffeid.RequireTrustDomainFromString("alpha.test"), log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in types.Entry
		if proto.Unmarshal(data, &in) == nil {
			if e, st := s.entryFromProto(&in); st == nil {
				again, st2 := s.entryFromProto(entrywire.ToProto(e, nil))
				require.Nil(t, st2)
				require.Equal(t, e.SPIFFEID, again.SPIFFEID)
				require.Equal(t, e.Selectors, again.Selectors)
				require.Equal(t, e.FederatesWith, again.FederatesWith)
			}
		}
		var b types.Bundle
		if proto.Unmarshal(data, &b) == nil {
			checkBundleConversion(t, &b)
		}
	})
}

// checkBundleConversion converts in as the bundle services do: a refusal
// converts to nothing, and an accepted bundle survives the way back to
// the API type and in again.
func checkBundleConversion(t *testing.T, in *types.Bundle) {
	b, err := bundlewire.FromProto(in)
	if err != nil {
		require.Nil(t, b, "an error never comes with a half-filled bundle")
		return
	}
	again, err := bundlewire.FromProto(bundlewire.ToProto(b, nil, nil, nil))
	require.NoError(t, err)
	require.True(t, again.Equal(b), "the bundle changed on its way back")
}
