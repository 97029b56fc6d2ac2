package profile

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Name
		err  string
	}{
		{"https_web", HTTPSWeb, ""},
		{"https_spiffe", HTTPSSPIFFE, ""},
		{"HTTPS_WEB", "", `unknown bundle endpoint profile "HTTPS_WEB": use https_web or https_spiffe`},
		{"", "", "use https_web or https_spiffe"},
	}
	for _, tc := range cases {
		name := "ok/" + tc.in
		if tc.err != "" {
			name = "fail/" + tc.in
		}
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
