// Package cli is treaty's command line: `treaty <noun> <verb>` with
// spire-server's single-dash camelCase flags (-socketPath, -format, -id,
// -output), results on stdout and diagnostics on stderr. Its commands are
// clients: of the admin API (through its wire contract, internal/adminwire),
// of the Workload API, or of a partner's bundle endpoint (probe); some run
// offline on files (bundle inspect/validate/convert, onboarding check,
// topology plan). The commands that run a server in this process, `server
// run` and `demo`, are added by cmd/treaty from internal/servercmd, so that
// this package never links the server it talks to.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/treatyhq/treaty/internal/version"
)

// command is one leaf of the command tree.
type command struct {
	name     string // words after "treaty", e.g. "bundle show"
	synopsis string
	run      func(ctx context.Context, e *env, args []string) error
}

// env carries a command's output streams.
type env struct {
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
}

func (e *env) printf(format string, args ...any) { fmt.Fprintf(e.stdout, format, args...) }

func (e *env) warnf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "warning: "+format+"\n", args...)
}

// Command is a command that Main does not define itself: cmd/treaty adds
// those that run a server in this process (internal/servercmd).
type Command struct {
	// Name is the words after "treaty", e.g. "server run".
	Name string
	// Synopsis is the command's line in the usage.
	Synopsis string
	// Run runs the command with the arguments after its name. It returns
	// flag.ErrHelp when asked for help, and a *UsageError for a
	// command-line mistake.
	Run func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// UsageError is a command-line mistake: Main prints it with a pointer to
// the command's -h and returns 2.
type UsageError struct{ Msg string }

func (u *UsageError) Error() string { return u.Msg }

func usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

func commands() []command {
	cmds := []command{
		{"healthcheck", "check that the server answers on its admin socket", runHealthcheck},
		{"version", "print treaty's version", runVersion},
	}
	cmds = append(cmds, bundleCommands()...)
	cmds = append(cmds, bundleToolCommands()...)
	cmds = append(cmds, federationCommands()...)
	cmds = append(cmds, inviteCommands()...)
	cmds = append(cmds, doctorCommands()...)
	cmds = append(cmds, probeCommands()...)
	cmds = append(cmds, onboardingCommands()...)
	cmds = append(cmds, topologyCommands()...)
	cmds = append(cmds, entryCommands()...)
	cmds = append(cmds, mintCommands()...)
	cmds = append(cmds, workloadCommands()...)
	cmds = append(cmds, agentCommands()...)
	cmds = append(cmds, tokenCommands()...)
	cmds = append(cmds, loggerCommands()...)
	cmds = append(cmds, upstreamAuthorityCommands()...)
	return append(cmds, localAuthorityCommands()...)
}

// external adapts a Command to the command tree.
func external(c Command) command {
	return command{c.Name, c.Synopsis, func(ctx context.Context, e *env, args []string) error {
		return c.Run(ctx, args, e.stdin, e.stdout, e.stderr)
	}}
}

// Main runs the command named by args (without the program name) and
// returns the process exit code: 0 on success, 1 when the command failed,
// 2 for a usage mistake. more are commands defined outside this package.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, more ...Command) int {
	e := &env{stdout: stdout, stderr: stderr, stdin: stdin}
	cmds := commands()
	for _, c := range more {
		cmds = append(cmds, external(c))
	}
	cmds = append(cmds, docCommands(cmds)...)
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, rest := find(cmds, args)
	if cmd == nil {
		printUsage(e.stderr, cmds, args)
		if len(args) == 0 || isHelp(args[0]) {
			return 0
		}
		return 2
	}
	err := cmd.run(ctx, e, rest)
	var usage *UsageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(e.stderr, "treaty %s: %s\nRun 'treaty %s -h' for its flags.\n", cmd.name, usage.Msg, cmd.name)
		return 2
	default:
		fmt.Fprintf(e.stderr, "error: %s\n", err)
		return 1
	}
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// find returns the command whose name is the longest prefix of args.
func find(cmds []command, args []string) (*command, []string) {
	for n := min(len(args), 3); n > 0; n-- {
		name := strings.Join(args[:n], " ")
		for i := range cmds {
			if cmds[i].name == name {
				return &cmds[i], args[n:]
			}
		}
	}
	return nil, nil
}

func printUsage(w io.Writer, cmds []command, args []string) {
	prefix := ""
	switch {
	case len(args) > 0 && strings.HasPrefix(args[0], "-") && !isHelp(args[0]):
		fmt.Fprintf(w, "treaty: unknown flag %q; a command comes first, e.g. treaty bundle show -socketPath PATH\n\n", args[0])
	case len(args) > 0 && !isHelp(args[0]):
		prefix = args[0]
		words := args
		for i, a := range args {
			if strings.HasPrefix(a, "-") {
				words = args[:i]
				break
			}
		}
		fmt.Fprintf(w, "treaty: unknown command %q\n\n", strings.Join(words, " "))
	}
	if !slices.ContainsFunc(cmds, func(c command) bool { return strings.HasPrefix(c.name, prefix) }) {
		prefix = "" // nothing starts like that: list everything
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	fmt.Fprintln(w, "Usage: treaty <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range cmds {
		if prefix == "" || strings.HasPrefix(c.name, prefix) {
			fmt.Fprintf(w, "  %-28s %s\n", c.name, c.synopsis)
		}
	}
	fmt.Fprintln(w, "\nRun 'treaty <command> -h' for a command's flags.")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("treaty "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parse parses args and rejects positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags start with a single dash, e.g. -socketPath)", fs.Arg(0))
	}
	return nil
}

func runVersion(_ context.Context, e *env, args []string) error {
	if err := parse(newFlags(e, "version"), args); err != nil {
		return err
	}
	e.printf("treaty %s\n", version.String())
	return nil
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// parseOutput parses args like parse, then checks the -output value, which
// is only known after parsing.
func parseOutput(fs *flag.FlagSet, args []string, output *string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	return checkChoice("output", *output, outputPretty, outputJSON)
}

// filterFlagSet registers the filter flags of a command that lists or
// counts, and builds its filter from them.
type filterFlagSet[F any] interface {
	register(fs *flag.FlagSet)
	filter() (F, error)
}

// parseFiltered parses the flags of a command that lists or counts through
// a filter: -socketPath, -output, the flags of f, and those extra (when
// not nil) registers.
func parseFiltered[F any](e *env, name string, args []string, f filterFlagSet[F], extra func(*flag.FlagSet)) (socketPath, output string, filter F, err error) {
	fs := newFlags(e, name)
	socket, out := socketFlag(fs), outputFlag(fs)
	f.register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := parseOutput(fs, args, out); err != nil {
		return "", "", filter, err
	}
	filter, err = f.filter()
	return *socket, *out, filter, err
}
