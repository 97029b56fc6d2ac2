package yamldoc

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a document, at its line.
type Problem struct {
	// File is the document's file, or empty when the caller names the file
	// once above its problems (as a configuration error does).
	File string `json:"file,omitempty"`
	// Line is the line the problem comes from, counting from 1, or 0 when
	// it is about the document as a whole.
	Line int `json:"line,omitempty"`
	// Field is the dotted path of the value the problem is about, such as
	// "ca.ca_ttl" or "peers[2].rotation", or empty.
	Field string `json:"field,omitempty"`
	// Message says what is wrong and, where it can, how to fix it.
	Message string `json:"message"`
}

// String formats p as "file:line: field: message", the form editors and CI
// logs link to. Without a file the position reads "line N: "; a position
// or field that is not known is left out, and so is the field when Message
// starts with it.
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		b.WriteString(p.File + ": ")
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" && !strings.HasPrefix(p.Message, p.Field+" ") {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// SortByLine orders ps by line, keeping the order of problems on one line.
func SortByLine(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
}

// Error lists every problem of a document that cannot be used.
type Error struct {
	// Source names what the problems are in, such as the file name or
	// "configuration"; it heads the message. Empty leaves the heading out.
	Source string
	// Problems holds the problems, ordered by line.
	Problems []Problem
}

// Error lists the problems one a line, under "Source: N problems:" when
// Source is set.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	if e.Source == "" {
		return strings.Join(lines, "\n")
	}
	noun := "problems"
	if len(e.Problems) == 1 {
		noun = "problem"
	}
	return fmt.Sprintf("%s: %d %s:\n  %s", e.Source, len(e.Problems), noun, strings.Join(lines, "\n  "))
}
