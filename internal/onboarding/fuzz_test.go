package onboarding

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

func FuzzParse(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(f, err)
	require.NotEmpty(f, examples)
	for _, path := range examples {
		data, err := os.ReadFile(path)
		require.NoError(f, err)
		f.Add(data)
	}
	for _, seed := range []string{
		"",
		"---\n",
		"- a\n",
		"a: &a [*a]\n",
		"<<: {trustDomain: x}\n",
		"kind: ClusterSPIFFEID\n",
		"apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterFederatedTrustDomain\nmetadata: {name: x}\nspec: {}\nstatus: 1\n",
		lines(tdLine, urlLine, "bundleEndpointURLs: [https://a.partner.example, '', http://b]", profileLine, spiffeLine, idLine),
		lines(tdLine, urlLine, profileLine, webLine, `trustDomainBundle: '{"keys":[{"use":"x509-svid","kty":"EC","x5c":["AA=="]}]}'`),
		lines(tdLine, urlLine, profileLine, webLine, "---", "x: 1"),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, problems := Parse(data, "fuzz.yaml")
		if len(problems) == 0 {
			require.NotNil(t, file)
			require.NoError(t, file.Relationship.Validate(), "Parse accepted what Validate rejects")
			require.Equal(t, "onboarding:fuzz.yaml", file.Relationship.ManagedBy)
			return
		}
		require.Nil(t, file)
		maxLine := yamldoc.LastLine(data)
		for _, p := range problems {
			require.Equal(t, "fuzz.yaml", p.File)
			require.NotEmpty(t, p.Message)
			require.GreaterOrEqual(t, p.Line, 0)
			require.LessOrEqual(t, p.Line, maxLine, "problem %s", p)
		}
	})
}
