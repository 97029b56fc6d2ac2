// Package dirstamp tells whether a directory's entries changed without
// reading the files: what the onboarding and signed bundles directories
// poll.
package dirstamp

import (
	"fmt"
	"os"
	"strings"
)

// Of summarises the names, sizes and modification times of dir's entries;
// two calls return the same string while none of them changed. A directory
// that cannot be read gives a string naming the error, so that it differs
// from any listing and from another error.
func Of(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
		}
	}
	return b.String()
}
