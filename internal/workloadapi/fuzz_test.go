package workloadapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
)

// FuzzRequestMetadata feeds arbitrary process status documents and request
// metadata to the parts of the Workload API that read them.
func FuzzRequestMetadata(f *testing.F) {
	f.Add([]byte("Name:\tx\nGroups:\t4 24 27 \n"), "workload.spiffe.io", "true")
	f.Add([]byte("Groups:\n"), "workload.spiffe.io", "false")
	f.Add([]byte("Groups: -1 99999999999999999999 x\n"), "other", "")
	f.Fuzz(func(t *testing.T, status []byte, key, value string) {
		for _, gid := range parseGroups(status) {
			require.GreaterOrEqual(t, gid, 0)
		}
		md := metadata.MD{}
		if key != "" {
			md = metadata.Pairs(key, value)
		}
		err := checkHeader(metadata.NewIncomingContext(context.Background(), md))
		ok := len(md.Get(securityHeader)) == 1 && md.Get(securityHeader)[0] == "true"
		require.Equal(t, ok, err == nil, "header %q=%q", key, value)
	})
}
