package config

import (
	"strings"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// source remembers where a Config came from, so that Validate can point at
// lines of the file and skip values the file already had problems with.
type source struct {
	file     string
	lines    map[string]int  // key path → line of the key
	failed   map[string]bool // key paths whose value could not be decoded
	problems []yamldoc.Problem
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
