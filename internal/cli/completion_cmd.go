package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
)

// docCommands are the commands generated from the command table itself:
// shell completion and the manual page. They see every command in cmds,
// those defined outside this package included, and themselves.
func docCommands(cmds []command) []command {
	all := slices.Clone(cmds)
	docs := []command{
		{"completion", "print a shell completion script: treaty completion bash|zsh|fish",
			func(_ context.Context, e *env, args []string) error { return runCompletion(e, args) }},
		{"man", "print treaty's manual page (roff): treaty man > treaty.1",
			func(ctx context.Context, e *env, args []string) error { return runMan(ctx, e, args, all) }},
		{"__complete", "list completions of the words after treaty (the completion scripts call it)",
			func(ctx context.Context, e *env, args []string) error { return runComplete(ctx, e, args, all) }},
	}
	all = append(all, docs...) // the closures see this: every command, these too
	return docs
}

func runComplete(ctx context.Context, e *env, args []string, cmds []command) error {
	for _, c := range complete(ctx, cmds, args) {
		e.printf("%s\n", c)
	}
	return nil
}

// completionScripts are the scripts, per shell. Each asks `treaty
// __complete` for the candidates, so completion follows the binary the
// shell finds, commands and flags alike; when it offers nothing (a flag's
// value, a file argument) the shell completes file names.
var completionScripts = map[string]string{
	"bash": `# bash completion for treaty: source it, or install it as
# /usr/share/bash-completion/completions/treaty
_treaty() {
	local IFS=$'\n'
	COMPREPLY=($(treaty __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -o nospace -F _treaty treaty
`,
	"zsh": `#compdef treaty
# zsh completion for treaty: source it, or install it as _treaty in a
# directory of $fpath
_treaty() {
	local -a candidates
	candidates=("${(@f)$(treaty __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	if [[ -n "${candidates[1]}" ]]; then
		compadd -S '' -a candidates
	else
		_files
	fi
}
if [[ "$funcstack[1]" == _treaty ]]; then
	_treaty "$@"
else
	compdef _treaty treaty
fi
`,
	"fish": `# fish completion for treaty: install it as
# ~/.config/fish/completions/treaty.fish
complete -c treaty -a '(treaty __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`,
}

func runCompletion(e *env, args []string) error {
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprintln(e.stderr, "Usage: treaty completion bash|zsh|fish\n\nPrints the shell's completion script, e.g.\n  source <(treaty completion bash)\n  treaty completion fish > ~/.config/fish/completions/treaty.fish")
		return flag.ErrHelp
	}
	if len(args) != 1 || completionScripts[args[0]] == "" {
		return usagef("name one shell: bash, zsh or fish")
	}
	e.printf("%s", completionScripts[args[0]])
	return nil
}

// complete returns the candidates for the last of words (the word being
// typed, maybe empty), after the words before it: the next word of a
// command name, or a flag of the command named.
func complete(ctx context.Context, cmds []command, words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, before := words[len(words)-1], words[:len(words)-1]
	var path []string
	for _, w := range before {
		if strings.HasPrefix(w, "-") {
			break
		}
		path = append(path, w)
	}
	name := strings.Join(path, " ")
	if i := slices.IndexFunc(cmds, func(c command) bool { return c.name == name }); i >= 0 && name != "" {
		if !strings.HasPrefix(cur, "-") {
			return nil // a flag's value or an argument: the shell's files
		}
		return withPrefix(flagNames(ctx, &cmds[i]), cur)
	}
	if strings.HasPrefix(cur, "-") {
		return withPrefix([]string{"-h", "-version"}, cur)
	}
	var next []string
	for _, c := range cmds {
		rest, ok := strings.CutPrefix(c.name, name)
		if name != "" && (!ok || !strings.HasPrefix(rest, " ")) || strings.HasPrefix(c.name, "__") {
			continue
		}
		word, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		next = append(next, word)
	}
	slices.Sort(next)
	return withPrefix(slices.Compact(next), cur)
}

func withPrefix(words []string, prefix string) []string {
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out
}

func flagNames(ctx context.Context, c *command) []string {
	var names []string
	for _, f := range commandFlags(ctx, c) {
		names = append(names, "-"+f.name)
	}
	return names
}

// cmdFlag is one flag of a command, as its help prints it.
type cmdFlag struct {
	name  string
	value string // the value's kind, e.g. "string"; empty for a switch
	usage string
}

// commandFlags runs c with -h and reads its flags from the help the flag
// package prints: the same text `treaty <command> -h` shows. The context
// is cancelled, so a command that would do anything before parsing its
// flags does nothing.
func commandFlags(ctx context.Context, c *command) []cmdFlag {
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, stdin: strings.NewReader("")}
	if err := c.run(ctx, e, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return parseFlagHelp(out.String())
}

// parseFlagHelp reads flag.PrintDefaults output: "  -name kind" lines
// (or "  -x\tusage" for one-letter flags), each followed by "    \tusage"
// lines.
func parseFlagHelp(help string) []cmdFlag {
	var flags []cmdFlag
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "  -"):
			head, usage, _ := strings.Cut(line[3:], "\t")
			name, value, _ := strings.Cut(head, " ")
			flags = append(flags, cmdFlag{name: name, value: value, usage: usage})
		case strings.HasPrefix(line, "    \t") && len(flags) > 0:
			f := &flags[len(flags)-1]
			f.usage = strings.TrimSpace(f.usage + " " + strings.TrimSpace(line))
		}
	}
	return flags
}
