package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// serverRun stands for a command defined outside this package.
var serverRun = Command{Name: "server run", Synopsis: "run a server", Run: func(_ context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("treaty server run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "path to the configuration file")
	return fs.Parse(args)
}}

func runMain(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(t.Context(), args, strings.NewReader(""), &out, &errOut, serverRun)
	return out.String(), code
}

func TestComplete(t *testing.T) {
	tests := []struct {
		name  string
		words []string
		want  []string
	}{
		{"ok/first word", []string{"bun"}, []string{"bundle"}},
		{"ok/outside command", []string{"ser"}, []string{"server"}},
		{"ok/second word", []string{"bundle", "sh"}, []string{"show"}},
		{"ok/flag of a command", []string{"bundle", "show", "-form"}, []string{"-format"}},
		{"ok/flag of an outside command", []string{"server", "run", "-c"}, []string{"-config"}},
		{"ok/flag value is the shell's", []string{"bundle", "show", "-format", ""}, []string{}},
		{"ok/top-level flag", []string{"-vers"}, []string{"-version"}},
		{"ok/completion is a command too", []string{"compl"}, []string{"completion"}},
		{"ok/unknown gives nothing", []string{"nosuch", ""}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runMain(t, append([]string{"__complete"}, tt.words...)...)
			require.Equal(t, 0, code)
			require.Equal(t, tt.want, strings.Fields(out))
		})
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run("ok/"+shell, func(t *testing.T) {
			out, code := runMain(t, "completion", shell)
			require.Equal(t, 0, code)
			require.Contains(t, out, "treaty __complete")
			sh, err := exec.LookPath(shell)
			if err != nil {
				t.Skipf("%s not installed: syntax not checked", shell)
			}
			cmd := exec.CommandContext(t.Context(), sh, "-n")
			cmd.Stdin = strings.NewReader(out)
			b, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s -n: %s", shell, b)
		})
	}
	_, code := runMain(t, "completion", "powershell")
	require.Equal(t, 2, code, "fail/unknown shell")
}

// TestMan: the page lists every command of the table, with the flags its
// -h shows, and is the same every time.
func TestMan(t *testing.T) {
	page, code := runMain(t, "man")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(page, ".TH TREATY 1 "))
	for _, c := range append(commands(), external(serverRun)) {
		require.Contains(t, page, `.SS "treaty `+roff(c.name)+`"`)
	}
	require.Contains(t, page, `.BI "\-socketPath " "string"`)
	require.Contains(t, page, `.BI "\-config " "string"`)
	require.NotContains(t, page, "__complete")
	again, _ := runMain(t, "man")
	require.Equal(t, page, again)
}

// TestEveryCommandHelps: each command answers -h with its flags and
// flag.ErrHelp before doing anything, which the man page and completion
// rely on.
func TestEveryCommandHelps(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, c := range commands() {
		var out bytes.Buffer
		err := c.run(ctx, &env{stdout: &out, stderr: &out, stdin: strings.NewReader("")}, []string{"-h"})
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("treaty %s -h: %v, want flag.ErrHelp", c.name, err)
		}
	}
}
