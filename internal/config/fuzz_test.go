package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

func FuzzParse(f *testing.F) {
	for _, name := range []string{"alpha.yaml", "beta.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
		require.NoError(f, err)
		f.Add(data)
	}
	for _, seed := range []string{
		fullFile,
		"",
		"---\n",
		"trust_domain: example.org\n",
		"trust_domain: Alpha.Test\nca:\n  ca_ttl: 7x\n  foo: 1\n",
		"trust_domain: example.org\nca:\n  ca_ttl: 1h\n  ca_ttl: 2h\n",
		"trust_domain: [example.org\n",
		"- a\n- b\n",
		"a: &a [*a]\n",
		"trust_domain: &t example.org\nca: *t\n<<: {x: 1}\n",
		"trust_domain: example.org\n---\nfoo: bar\n",
		"trust_domain: example.org\nbundle_endpoint:\n  refresh_hint: 7d\n  address: ':0'\n  rate_limit: 1e308\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err == nil {
			require.NotNil(t, c)
			require.NoError(t, c.Validate(), "Parse accepted what Validate rejects")
			return
		}
		var pe *yamldoc.Error
		require.ErrorAs(t, err, &pe)
		require.NotEmpty(t, pe.Problems)
		_ = err.Error()
		if c != nil {
			require.Error(t, c.Validate(), "Validate accepted what Parse rejected")
		}
	})
}
