package cli

import (
	"context"
	"io"

	"github.com/treatyhq/treaty/internal/demo"
)

func demoCommands() []command {
	return []command{{"demo", "run two federated trust domains on loopback: bootstrap, mTLS, authorisation, CA rotation", runDemo}}
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "demo")
	keep := fs.Bool("keep", false, "leave both servers running afterwards and print commands to try")
	dir := fs.String("dir", "", "directory for the demo's files (default: a new temporary directory, removed at the end)")
	output := outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	timeline := e.stdout
	if *output == outputJSON {
		timeline = e.stderr
	}
	cliMain := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return Main(ctx, args, e.stdin, stdout, stderr)
	}
	res, err := demo.Run(ctx, demo.Config{Out: timeline, CLI: cliMain, Keep: *keep, Dir: *dir})
	if err != nil {
		return err
	}
	if *output == outputJSON {
		return printIndented(e, res)
	}
	return nil
}
