package cli

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLoggerAndDebugCommands: logger get|set|reset, debug getinfo and
// upstreamauthority taint|revoke print what spire-server's commands print.
func TestLoggerAndDebugCommands(t *testing.T) {
	socket := startServer(t, "alpha.test")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "ok/get", args: []string{"logger", "get"}, stdout: "Logger Level : info\nLaunch Level : info\n\n"},
		{name: "ok/set", args: []string{"logger", "set", "-level", "debug"}, stdout: "Logger Level : debug\nLaunch Level : info\n\n"},
		{name: "ok/get after set", args: []string{"logger", "get", "-output", "json"}, stdout: `{"current_level":"DEBUG","launch_level":"INFO"}`},
		{name: "ok/set warning", args: []string{"logger", "set", "-level", "warning"}, stdout: "Logger Level : warning\nLaunch Level : info\n\n"},
		{name: "ok/reset", args: []string{"logger", "reset"}, stdout: "Logger Level : info\nLaunch Level : info\n\n"},
		{name: "fail/set without level", args: []string{"logger", "set"}, code: 2, stderr: "a value (-level) must be set"},
		{name: "fail/set unknown level", args: []string{"logger", "set", "-level", "loud"}, code: 2, stderr: `-level "loud": use one of panic, fatal, error, warn, info, debug, trace`},
		{name: "ok/debug getinfo", args: []string{"debug", "getinfo"}, stdout: "Server Debug Info:\n  Uptime:"},
		{name: "fail/upstream taint without skid", args: []string{"upstreamauthority", "taint"}, code: 2, stderr: "the Subject Key ID of the X.509 upstream authority is required"},
		{name: "fail/upstream taint without upstream", args: []string{"upstreamauthority", "taint", "-subjectKeyID", "AB"}, code: 1, stderr: "upstream authority is not configured"},
		{name: "fail/upstream revoke without upstream", args: []string{"upstreamauthority", "revoke", "-subjectKeyID", "ab"}, code: 1, stderr: "upstream authority is not configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, "", append(tc.args, "-socketPath", socket)...)
			require.Equal(t, tc.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Contains(t, stdout, tc.stdout)
			require.Contains(t, stderr, tc.stderr)
		})
	}
}
