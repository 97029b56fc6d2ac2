package adminapi

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/datastore"
)

func TestJoinStatus(t *testing.T) {
	used := fmt.Errorf("this invite was already used at 2026-01-01T00:00:00Z: %w", datastore.ErrInviteUsed)
	exists := fmt.Errorf("relationship with %q: %w", "beta.test", datastore.ErrAlreadyExists)
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"ok", nil, codes.OK, ""},
		{"fail/used says so once", used, codes.AlreadyExists, "this invite was already used at 2026-01-01T00:00:00Z; an invite can be joined once: ask the partner for a new one"},
		{"fail/relationship exists", exists, codes.AlreadyExists, "a federation relationship with beta.test exists already"},
		{"fail/other", errors.New("disk"), codes.Internal, "disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(joinStatus(tc.err, "beta.test"))
			require.Equal(t, tc.code, st.Code())
			require.Contains(t, st.Message(), tc.msg)
			require.LessOrEqual(t, strings.Count(st.Message(), "already used"), 1)
		})
	}
}
