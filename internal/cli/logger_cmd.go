package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	debugv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/debug/v1"
	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
)

func loggerCommands() []command {
	return []command{
		{"logger get", "show the log level of the running server and the level it started with", runLoggerGet},
		{"logger set", "change the log level of the running server (no restart)", runLoggerSet},
		{"logger reset", "set the log level of the running server back to the level it started with", runLoggerReset},
		{"debug getinfo", "show the server's uptime and how many agents, entries and bundles it holds", runDebugGetInfo},
	}
}

// logLevelNames are the levels as spire-server's -level spells them.
var logLevelNames = []string{"panic", "fatal", "error", "warn", "info", "debug", "trace"}

// callLogger runs one Logger API call and prints the result as
// spire-server does.
func callLogger(ctx context.Context, e *env, socketPath, output string, call func(context.Context, loggerv1.LoggerClient) (*types.Logger, error)) error {
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		l, err := call(ctx, loggerv1.NewLoggerClient(conn))
		if err != nil {
			return err
		}
		if output == outputJSON {
			return printJSON(e.stdout, l)
		}
		e.printf("Logger Level : %s\nLaunch Level : %s\n\n", levelName(l.GetCurrentLevel()), levelName(l.GetLaunchLevel()))
		return nil
	})
}

// levelName names l as spire-server prints it (logrus's names: warn is
// "warning").
func levelName(l types.LogLevel) string {
	if l == types.LogLevel_WARN {
		return "warning"
	}
	return strings.ToLower(l.String())
}

func runLoggerGet(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "logger get")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return callLogger(ctx, e, *socketPath, *output, func(ctx context.Context, c loggerv1.LoggerClient) (*types.Logger, error) {
		return c.GetLogger(ctx, &loggerv1.GetLoggerRequest{})
	})
}

func runLoggerReset(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "logger reset")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return callLogger(ctx, e, *socketPath, *output, func(ctx context.Context, c loggerv1.LoggerClient) (*types.Logger, error) {
		return c.ResetLogLevel(ctx, &loggerv1.ResetLogLevelRequest{})
	})
}

func runLoggerSet(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "logger set")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	name := fs.String("level", "", "the new log level, one of ("+strings.Join(logLevelNames, ", ")+")")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	upper := strings.ToUpper(*name)
	if upper == "WARNING" { // as logrus also spells it
		upper = "WARN"
	}
	v, ok := types.LogLevel_value[upper]
	switch {
	case *name == "":
		return usagef("a value (-level) must be set: one of %s", strings.Join(logLevelNames, ", "))
	case !ok || v == int32(types.LogLevel_UNSPECIFIED):
		return usagef("-level %q: use one of %s", *name, strings.Join(logLevelNames, ", "))
	}
	return callLogger(ctx, e, *socketPath, *output, func(ctx context.Context, c loggerv1.LoggerClient) (*types.Logger, error) {
		return c.SetLogLevel(ctx, &loggerv1.SetLogLevelRequest{NewLevel: types.LogLevel(v)})
	})
}

func runDebugGetInfo(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "debug getinfo")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		info, err := debugv1.NewDebugClient(conn).GetInfo(ctx, &debugv1.GetInfoRequest{})
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, info)
		}
		printDebugInfo(e, info)
		return nil
	})
}

// printDebugInfo prints GetInfo as spire-server debug getinfo does.
func printDebugInfo(e *env, info *debugv1.GetInfoResponse) {
	e.printf("Server Debug Info:\n")
	e.printf("  Uptime:                  %s\n", (time.Duration(info.GetUptime()) * time.Second).String())
	e.printf("  Registered Agents:       %d\n", info.GetAgentsCount())
	e.printf("  Registration Entries:    %d\n", info.GetEntriesCount())
	e.printf("  Federated Bundles:       %d\n", info.GetFederatedBundlesCount())
	if len(info.GetSvidChain()) == 0 {
		return
	}
	e.printf("  SVID Chain:\n")
	for i, c := range info.GetSvidChain() {
		id := "(none)"
		if c.GetId() != nil {
			id = fmt.Sprintf("spiffe://%s%s", c.GetId().GetTrustDomain(), c.GetId().GetPath())
		}
		e.printf("    [%d] SPIFFE ID:  %s\n", i, id)
		e.printf("        Subject:    %s\n", c.GetSubject())
		e.printf("        Expires At: %s\n", time.Unix(c.GetExpiresAt(), 0).UTC().Format(time.RFC3339))
	}
}
