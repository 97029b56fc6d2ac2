package bundle

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/finding"
)

// FuzzValidate runs every offline tool on arbitrary input: none may panic,
// and a bundle Validate passes must inspect and convert.
func FuzzValidate(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(corpusDir, "*"))
	require.NoError(f, err)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v := Validate(corpusTD, data, ValidateOptions{Now: corpusNow})
		require.Len(t, v.Findings, len(Checks)+countExtra(v))
		_, _ = Inspect(corpusTD, data, corpusNow)
		InferTrustDomain(data)
		for _, from := range []string{FormatSPIFFE, FormatPEM, FormatJWKS} {
			_, _, _ = Convert(corpusTD, data, from, FormatSPIFFE)
		}
		if v.Worst() != finding.Fail && v.Format == FormatSPIFFE {
			_, err := Inspect(corpusTD, data, corpusNow.Add(time.Hour))
			require.NoError(t, err, "a bundle that validates must inspect")
		}
	})
}

// countExtra is how many findings go beyond one per check.
func countExtra(v *Validation) int {
	seen := map[finding.CheckID]int{}
	for _, f := range v.Findings {
		seen[f.Check]++
	}
	extra := 0
	for _, n := range seen {
		extra += n - 1
	}
	return extra
}
