package version

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFromBuild(t *testing.T) {
	installed := &debug.BuildInfo{GoVersion: "go1.25.0", Main: debug.Module{Path: "github.com/treatyhq/treaty", Version: "v1.4.0"}}
	checkout := &debug.BuildInfo{GoVersion: "go1.25.0", Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}
	tests := []struct {
		name  string
		stamp string
		bi    *debug.BuildInfo
		want  Info
	}{
		{"ok/stamp wins", "v2.0.0", installed, Info{Version: "v2.0.0", GoVersion: "go1.25.0"}},
		{"ok/go install module version", "", installed, Info{Version: "v1.4.0", GoVersion: "go1.25.0"}},
		{"ok/checkout is dev with its revision", "", checkout, Info{Version: Dev, Revision: "abc123", GoVersion: "go1.25.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, fromBuild(tt.stamp, tt.bi))
		})
	}
	require.Equal(t, Dev, fromBuild("", nil).Version, "no build info")
}
