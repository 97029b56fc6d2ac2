package bundle

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestMarshalGolden pins the exact bytes treaty publishes for a bundle: the
// input lists JWT keys out of order and with extra whitespace; the output
// is canonical. Run with -update to regenerate both files from fresh keys.
func TestMarshalGolden(t *testing.T) {
	input, golden := filepath.Join("testdata", "input.json"), filepath.Join("testdata", "golden.json")
	if *update {
		writeGoldenInput(t, input)
	}
	data, err := os.ReadFile(input)
	require.NoError(t, err)
	res, err := Parse(td, data, Options{})
	require.NoError(t, err)
	got, err := Marshal(res.Bundle)
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile(golden, got, 0o600))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
}

// writeGoldenInput writes a bundle whose JWT keys are in reverse order,
// indented, so the golden output proves ordering and compaction.
func writeGoldenInput(t *testing.T, path string) {
	raw, err := Marshal(sampleBundle(t))
	require.NoError(t, err)
	var doc struct {
		Keys        []json.RawMessage `json:"keys"`
		RefreshHint int64             `json:"spiffe_refresh_hint"`
		Sequence    uint64            `json:"spiffe_sequence"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	x509Keys, jwtKeys := doc.Keys[:2], doc.Keys[2:]
	for i, j := 0, len(jwtKeys)-1; i < j; i, j = i+1, j-1 {
		jwtKeys[i], jwtKeys[j] = jwtKeys[j], jwtKeys[i]
	}
	doc.Keys = append(append([]json.RawMessage{}, jwtKeys...), x509Keys...)
	out, err := json.MarshalIndent(doc, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, out, 0o600))
}
