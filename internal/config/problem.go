package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Line is the line of the file the problem comes from, counting from 1,
	// or 0 when it comes from no line of a file.
	Line int
	// Path is the dotted key the problem is about, such as "ca.ca_ttl", or
	// empty when it is about the whole file.
	Path string
	// Message says what is wrong and, where it can, how to fix it.
	Message string
}

// String formats p as "line N: path: message". It leaves out "line N: " when
// Line is 0, and "path: " when Path is empty or Message starts with it.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" && !strings.HasPrefix(p.Message, p.Path+" ") {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ProblemsError lists every problem found in a configuration.
type ProblemsError struct {
	// File is the name of the configuration file, or empty when the
	// configuration did not come from a file.
	File string
	// Problems holds the problems ordered by line.
	Problems []Problem
}

// Error lists the problems one a line under a heading naming the file.
func (e *ProblemsError) Error() string {
	file := e.File
	if file == "" {
		file = "configuration"
	}
	noun := "problems"
	if len(e.Problems) == 1 {
		noun = "problem"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d %s:", file, len(e.Problems), noun)
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// source remembers where a Config came from, so that Validate can point at
// lines of the file and skip values the file already had problems with.
type source struct {
	file     string
	lines    map[string]int  // key path → line of the key
	failed   map[string]bool // key paths whose value could not be decoded
	problems []Problem       // problems found while reading the file
}

func newSource(file string) *source {
	return &source{file: file, lines: map[string]int{}, failed: map[string]bool{}}
}

// lineOf returns the line of the first of paths that the file sets, else the
// line of the closest enclosing section of paths[0], else 0.
func (s *source) lineOf(paths ...string) int {
	for _, p := range paths {
		if l, ok := s.lines[p]; ok {
			return l
		}
	}
	for p := parent(paths[0]); p != ""; p = parent(p) {
		if l, ok := s.lines[p]; ok {
			return l
		}
	}
	return 0
}

// parent returns the path of the section holding path, "" at the top.
func parent(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// join returns the path of key inside the section at path. A key that is not
// a plain word is quoted, so that odd keys print legibly.
func join(path, key string) string {
	if !isWord(key) {
		key = quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isWord(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r != '_' && r != '-' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9')
	})
}

// quote quotes a value from the file for a message, shortening a long one.
func quote(s string) string {
	const maxRunes = 60
	if r := []rune(s); len(r) > maxRunes {
		return fmt.Sprintf("%q…", string(r[:maxRunes]))
	}
	return fmt.Sprintf("%q", s)
}
