package dirstamp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOf(t *testing.T) {
	dir := t.TempDir()
	empty := Of(dir)
	require.Equal(t, empty, Of(dir), "nothing changed")

	file := filepath.Join(dir, "a.json")
	require.NoError(t, os.WriteFile(file, []byte("{}"), 0o600))
	added := Of(dir)
	require.NotEqual(t, empty, added, "a file added")

	require.NoError(t, os.WriteFile(file, []byte("{ }"), 0o600))
	require.NotEqual(t, added, Of(dir), "a file grown")

	grown := Of(dir)
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(file, later, later))
	require.NotEqual(t, grown, Of(dir), "a file touched")

	missing := Of(filepath.Join(dir, "missing"))
	require.Contains(t, missing, "error: ")
	require.NotEqual(t, empty, missing)
}
