package topology

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// FuzzParse: no topology file may panic the parser or the planner, a
// refused file gets its problems and no topology, and whatever parses gets
// a decision per peer.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "topology", "provisioning.yaml"))
	require.NoError(f, err)
	f.Add(data)
	f.Add([]byte("self:\n  trust_domain: a.example\npeers:\n  - name: p\n    air_gapped: true\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, _, err := Parse(data, "fuzz.yaml")
		if err != nil {
			require.Nil(t, topo, "an error never comes with a half-filled topology")
			var ye *yamldoc.Error
			require.ErrorAs(t, err, &ye)
			require.NotEmpty(t, ye.Problems, "a refusal says what is wrong")
			return
		}
		plan := Plan(topo)
		require.Len(t, plan, len(topo.Peers))
		_ = Markdown(topo, plan)
	})
}
