package servercmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/treatyhq/treaty/internal/cli"
	"github.com/treatyhq/treaty/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags(stderr, "demo")
	keep := fs.Bool("keep", false, "leave both servers running afterwards and print commands to try")
	dir := fs.String("dir", "", "directory for the demo's files (default: a new temporary directory, removed at the end)")
	output := fs.String("output", "pretty", "output style: pretty or json")
	alphaPort := fs.Int("alphaPort", 0, "loopback port of alpha.test's bundle endpoint (default: a free port)")
	betaPort := fs.Int("betaPort", 0, "loopback port of beta.test's bundle endpoint (default: a free port)")
	servicePort := fs.Int("servicePort", 0, "loopback port of beta.test's mTLS service (default: a free port)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *output != "pretty" && *output != "json" {
		return &cli.UsageError{Msg: fmt.Sprintf("-output %q: use pretty or json", *output)}
	}
	timeline := stdout
	if *output == "json" {
		timeline = stderr
	}
	// Each step is a real command of the client, run in this process.
	cliMain := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return cli.Main(ctx, args, stdin, stdout, stderr)
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"alphaPort", *alphaPort}, {"betaPort", *betaPort}, {"servicePort", *servicePort}} {
		if p.port < 0 || p.port > 65535 {
			return &cli.UsageError{Msg: fmt.Sprintf("-%s %d: use a port from 1 to 65535, or 0 for a free one", p.flag, p.port)}
		}
	}
	res, err := demo.Run(ctx, demo.Config{Out: timeline, CLI: cliMain, Keep: *keep, Dir: *dir,
		AlphaPort: *alphaPort, BetaPort: *betaPort, ServicePort: *servicePort})
	if err != nil {
		return err
	}
	if *output == "json" {
		out, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", out)
		return err
	}
	return nil
}
