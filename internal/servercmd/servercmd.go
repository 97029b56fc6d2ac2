// Package servercmd holds the commands that run treaty servers in this
// process, `treaty server run` and `treaty demo`, and the one that opens
// a stopped server's datastore directly, `treaty datastore migrate`.
// cmd/treaty adds them to internal/cli's command tree; they live apart so
// that internal/cli, a client of the admin API, never links the server it
// talks to.
package servercmd

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/treatyhq/treaty/internal/cli"
)

// Commands returns `server run`, `demo` and `datastore migrate`, for
// cli.Main.
func Commands() []cli.Command {
	return []cli.Command{
		{Name: "server run", Synopsis: "run a trust domain server", Run: runServer},
		{Name: "demo", Synopsis: "run two federated trust domains on loopback: bootstrap, mTLS, authorisation, CA rotation", Run: runDemo},
		{Name: "datastore migrate", Synopsis: "copy a stopped server's records into an empty datastore (SQLite to PostgreSQL) and verify them", Run: runDatastoreMigrate},
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(stderr io.Writer, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("treaty "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args and rejects positional arguments, as cli's commands do.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &cli.UsageError{Msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return &cli.UsageError{Msg: fmt.Sprintf("unexpected argument %q (flags start with a single dash, e.g. -config)", fs.Arg(0))}
	}
	return nil
}
