package onboarding

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Problem is what made an onboarding file unusable, or a problem of the
// directory as a whole, such as two files for one trust domain.
type Problem struct {
	// Path is the file the problem is about, as found in the directory.
	Path string
	// Line is the line of the file the problem comes from, counting from 1,
	// or 0 when it is about the whole file.
	Line int
	// Message says what is wrong and, where it can, how to fix it.
	Message string
}

// String formats p as "path:line: message", the form editors and CI logs
// link to. It leaves out ":line" when Line is 0 and "path:" when Path is
// empty.
func (p Problem) String() string {
	var b strings.Builder
	if p.Path != "" {
		b.WriteString(p.Path)
	}
	if p.Line > 0 {
		if p.Path == "" {
			b.WriteString("line ")
		} else {
			b.WriteString(":")
		}
		b.WriteString(strconv.Itoa(p.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// problems collects the problems of one file.
type problems struct {
	path     string
	list     []Problem
	lastLine int // the last line of the file, once known
}

func (ps *problems) add(line int, format string, args ...any) {
	ps.list = append(ps.list, Problem{Path: ps.path, Line: line, Message: fmt.Sprintf(format, args...)})
}

// yamlLine matches the position yaml.v3 puts in front of its messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parserProblems are the messages of yaml.v3's parser, as opposed to its
// scanner. yaml.v3 (v3.0.1) numbers the lines of parser errors from 0 and
// those of scanner errors from 1.
var parserProblems = []string{
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected node content",
	"did not find expected <document start>",
	"found undefined tag handle",
}

// syntax records a yaml.v3 error as a problem at its line.
func (ps *problems) syntax(err error) {
	msg, line := err.Error(), 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
		if slices.Contains(parserProblems, msg) {
			line++
		}
		if ps.lastLine > 0 {
			line = min(line, ps.lastLine) // yaml.v3 puts the end of the file on a line of its own
		}
	}
	ps.add(line, "not valid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}
