package onboarding

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// onboardingDir returns a directory holding every kind of file LoadDir
// meets.
func onboardingDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"partner.example.yaml", "web.example.yaml", "failover.example.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	dup := lines("trustDomain: dup.example", "bundleEndpointURL: https://spire.dup.example", profileLine, webLine)
	for name, content := range map[string]string{
		"UPPER.YAML":          lines("trustDomain: upper.example", "bundleEndpointURL: https://spire.upper.example", profileLine, webLine),
		"bad.yaml":            lines("trustDomain: bad.example", "bundleEndpointURL: http://spire.bad.example", profileLine, webLine),
		"other-class.yaml":    lines("className: other", "trustDomain: other.example", "bundleEndpointURL: http://broken", profileLine, webLine),
		"dup-a.yml":           dup,
		"dup-b.yaml":          "# the same partner again\n" + dup,
		"README.md":           "# Onboarding\n",
		"notes.txt":           "trustDomain: [\n",
		".x.yaml":             "trustDomain: [\n",
		".template.yaml":      lines("trustDomain: template.example", "bundleEndpointURL: https://spire.template.example", profileLine, webLine),
		"sub.yaml/inner.yaml": dup,
		"large.yaml":          "# " + strings.Repeat("x", MaxFileSize),
	} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	}
	return dir
}

func TestLoadDir(t *testing.T) {
	dir := onboardingDir(t)
	in := func(name string) string { return filepath.Join(dir, name) }
	const tls = "uses http://, but the SPIFFE Federation standard requires TLS: use https://"
	bad := yamldoc.Problem{File: in("bad.yaml"), Line: 2, Message: `bundleEndpointURL: "http://spire.bad.example" ` + tls}
	dupA := yamldoc.Problem{File: in("dup-a.yml"), Line: 1, Message: "trust domain dup.example is also defined in " +
		in("dup-b.yaml") + "; none of these files is used until only one defines it"}
	dupB := yamldoc.Problem{File: in("dup-b.yaml"), Line: 2, Message: "trust domain dup.example is also defined in " +
		in("dup-a.yml") + "; none of these files is used until only one defines it"}
	// A file that cannot be read has no className to skip it by.
	large := yamldoc.Problem{File: in("large.yaml"), Message: "the file is larger than 1048576 bytes; an onboarding file holds one trust domain and its bundle"}
	otherClass := yamldoc.Problem{File: in("other-class.yaml"), Line: 3, Message: `bundleEndpointURL: "http://broken" ` + tls}
	for _, tc := range []struct {
		name      string
		className string
		files     []string
		problems  []yamldoc.Problem
	}{
		{
			name:      "ok/class filter skips other classes, keeps files without one",
			className: "spire-system-spire",
			files:     []string{"UPPER.YAML", "failover.example.yaml", "partner.example.yaml"},
			problems:  []yamldoc.Problem{bad, dupA, dupB, large},
		},
		{
			name:      "ok/class filter for another class",
			className: "dir-spire",
			files:     []string{"UPPER.YAML", "failover.example.yaml", "web.example.yaml"},
			problems:  []yamldoc.Problem{bad, dupA, dupB, large},
		},
		{
			name:     "ok/no class filter keeps every class",
			files:    []string{"UPPER.YAML", "failover.example.yaml", "partner.example.yaml", "web.example.yaml"},
			problems: []yamldoc.Problem{bad, dupA, dupB, large, otherClass},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, problems, err := LoadDir(dir, tc.className)
			require.NoError(t, err)
			var names []string
			for _, f := range files {
				names = append(names, filepath.Base(f.Path))
				require.Equal(t, "onboarding:"+filepath.Base(f.Path), f.Relationship.ManagedBy)
				require.NoError(t, f.Relationship.Validate())
			}
			require.Equal(t, tc.files, names)
			require.Equal(t, tc.problems, problems)
		})
	}
}

func TestLoadDirErrors(t *testing.T) {
	t.Run("fail/missing directory", func(t *testing.T) {
		files, problems, err := LoadDir(filepath.Join(t.TempDir(), "nope"), "")
		require.ErrorContains(t, err, "read onboarding directory: open ")
		require.ErrorIs(t, err, os.ErrNotExist)
		require.Nil(t, files)
		require.Nil(t, problems)
	})
	t.Run("ok/empty directory", func(t *testing.T) {
		files, problems, err := LoadDir(t.TempDir(), "")
		require.NoError(t, err)
		require.Empty(t, files)
		require.Empty(t, problems)
	})
}
