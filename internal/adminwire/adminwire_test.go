package adminwire

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/finding"
)

func TestStructRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		msg  any
		back any
	}{
		{"ok/invite request", &InviteRequest{URL: "https://a.test/", TTLSeconds: 3600, EmbedBundle: true}, &InviteRequest{}},
		{"ok/join response", &JoinResponse{TrustDomain: "b.test", Sequence: 1<<63 + 1, ReverseToken: "treaty-invite-1.x"}, &JoinResponse{}},
		{"ok/status", &StatusResponse{
			Relationships: []RelationshipStatus{{TrustDomain: "b.test", State: "healthy", ConsecutiveFailures: 2, Warnings: []string{"w"}, Sequence: 1<<63 + 1,
				Ignored: []IgnoredEntry{{Index: 2, Use: "x509-svid", Reason: "x5c", Message: "keys[2] (x509-svid) ignored: no certificate"}}}},
			FederationGaps: []FederationGap{{EntryID: "e", SPIFFEID: "spiffe://a.test/w", TrustDomain: "c.test"}},
		}, &StatusResponse{}},
		{"ok/doctor", &DoctorResponse{Checks: []finding.Finding{{Check: "ca", Severity: finding.Pass, Message: "ok", Doc: "ca"}}}, &DoctorResponse{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ToStruct(tc.msg)
			require.NoError(t, err)
			require.NoError(t, FromStruct(s, tc.back))
			require.Equal(t, tc.msg, tc.back)
		})
	}
}

// TestWireSpelling pins the Struct keys: they are the contract with
// clients that are not treaty's CLI.
func TestWireSpelling(t *testing.T) {
	s, err := ToStruct(JoinResponse{TrustDomain: "b.test", Profile: "https_web", URL: "https://b.test/", Fingerprint: "f", Sequence: 7})
	require.NoError(t, err)
	raw, err := protojson.Marshal(s)
	require.NoError(t, err)
	// A spiffe_sequence is a decimal string: Struct numbers are doubles,
	// and the sequence has 64 bits (SPIFFE Trust Domain and Bundle §4.1.1).
	require.JSONEq(t, `{"trust_domain":"b.test","profile":"https_web","url":"https://b.test/","fingerprint":"f","sequence":"7"}`, string(raw))
}

func TestFromStructMismatch(t *testing.T) {
	s, err := structpb.NewStruct(map[string]any{"sequence": "seven"})
	require.NoError(t, err)
	require.ErrorContains(t, FromStruct(s, &JoinResponse{}), "decode *adminwire.JoinResponse")
}
