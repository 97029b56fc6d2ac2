package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/treatyhq/treaty/internal/version"
)

// runMan prints treaty(1) in roff, from the command table: each command's
// synopsis and the flags its -h prints. The page carries no date, so the
// same binary always prints the same page.
func runMan(ctx context.Context, e *env, args []string, cmds []command) error {
	if err := parse(newFlags(e, "man"), args); err != nil {
		return err
	}
	cmds = slices.Clone(cmds)
	slices.SortFunc(cmds, func(a, b command) int { return strings.Compare(a.name, b.name) })
	w := e.stdout
	fmt.Fprintf(w, ".TH TREATY 1 \"\" \"treaty %s\" \"User Commands\"\n", roff(version.String()))
	fmt.Fprint(w, manHead)
	for i := range cmds {
		if !strings.HasPrefix(cmds[i].name, "__") {
			manCommand(ctx, w, &cmds[i])
		}
	}
	fmt.Fprint(w, manTail)
	return nil
}

func manCommand(ctx context.Context, w io.Writer, c *command) {
	fmt.Fprintf(w, ".SS \"treaty %s\"\n%s\n", roff(c.name), roff(c.synopsis))
	for _, f := range commandFlags(ctx, c) {
		if f.value == "" {
			fmt.Fprintf(w, ".TP\n.B \\-%s\n", roff(f.name))
		} else {
			fmt.Fprintf(w, ".TP\n.BI \"\\-%s \" \"%s\"\n", roff(f.name), roff(f.value))
		}
		fmt.Fprintf(w, "%s\n", roff(f.usage))
	}
}

// roff escapes text for a roff line: backslashes, and a leading dot or
// apostrophe that would start a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

const manHead = `.SH NAME
treaty \- SPIFFE trust\-domain server built for federation, and its command\-line client
.SH SYNOPSIS
.B treaty
.I command
.RI [ flags ]
.SH DESCRIPTION
.B treaty server run
runs a trust domain: its certificate authority, its SPIFFE bundle endpoint,
the refresh of partner trust domains' bundles, and the SPIFFE Workload API.
The other commands are clients of a running server's admin socket (with
spire\-server's command and flag spellings), of a partner's bundle endpoint,
or work offline on files.
Results go to standard output, diagnostics to standard error.
.SH COMMANDS
`

const manTail = `.SH EXIT STATUS
0 on success, 1 when the command failed, 2 for a mistake on the command line.
.SH FILES
.TP
.I /etc/treaty/treaty.yaml
The configuration file, as the systemd unit and the container image read it
.RB ( "treaty server run \-config" ).
.TP
.I /var/lib/treaty
data_dir: the database and the CA's private keys.
.TP
.I /run/treaty/private/admin.sock
The admin socket the client commands talk to
.RB ( \-socketPath ).
.SH SEE ALSO
.BR spire\-server (1)
`
