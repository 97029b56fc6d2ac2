package onboarding

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// LoadDir reads every onboarding file in dir: the files whose names end in
// .yaml or .yml (in any case), except hidden ones (a leading dot, as in
// templates such as .federation.web.template.yaml). It does not descend
// into subdirectories and ignores files with other extensions.
//
// When className is not empty, files whose className is another one are
// skipped silently, even if they have problems: they are for another
// controller, as spire-controller-manager's className selects. Files that
// set no className are kept, as the className-less files of a shared
// onboarding repository are meant for every member.
//
// LoadDir returns the files that parsed cleanly and the problems of the
// others, ordered by path and line; a bad file never hides the others.
// When two or more good files are for the same trust domain, none of them
// is used and each is reported, naming the others. LoadDir returns an
// error only when dir itself cannot be read.
func LoadDir(dir, className string) ([]File, []yamldoc.Problem, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read onboarding directory: %w", err)
	}
	var files []File
	var problems []yamldoc.Problem
	for _, e := range entries {
		if e.IsDir() || !isOnboardingFile(e.Name()) {
			continue
		}
		f, class, ps := load(filepath.Join(dir, e.Name()))
		switch {
		case className != "" && class != "" && class != className:
		case len(ps) > 0:
			problems = append(problems, ps...)
		default:
			files = append(files, *f)
		}
	}
	files, dups := dropDuplicates(files)
	problems = append(problems, dups...)
	slices.SortStableFunc(problems, func(a, b yamldoc.Problem) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return files, problems, nil
}

// isOnboardingFile reports whether name is that of a visible YAML file.
func isOnboardingFile(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return !strings.HasPrefix(name, ".") && (ext == ".yaml" || ext == ".yml")
}

// load reads and parses the file at path.
func load(path string) (*File, string, []yamldoc.Problem) {
	data, err := readFile(path)
	if err != nil {
		return nil, "", []yamldoc.Problem{{File: path, Message: err.Error()}}
	}
	return parse(data, path)
}

// errTooLarge is why a file is not read.
var errTooLarge = fmt.Errorf("the file is larger than %d bytes; %s", MaxFileSize, tooLargeHint)

// readFile reads the regular file at path, reading no more than
// MaxFileSize bytes. It does not open anything else, as opening a named
// pipe would block.
func readFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot read the file: %w", err)
	case !info.Mode().IsRegular():
		return nil, errors.New("not a regular file; an onboarding file must be a plain YAML file")
	case info.Size() > MaxFileSize:
		return nil, errTooLarge
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot read the file: %w", err)
	case len(data) > MaxFileSize:
		return nil, errTooLarge
	}
	return data, nil
}

// dropDuplicates returns the files that are alone with their trust domain,
// and a problem for each of the others: which relationship the directory
// means is ambiguous, and picking one would let a file added later
// silently replace a partner's endpoint.
func dropDuplicates(files []File) ([]File, []yamldoc.Problem) {
	byTD := make(map[spiffeid.TrustDomain][]string, len(files))
	for _, f := range files {
		td := f.Relationship.TrustDomain
		byTD[td] = append(byTD[td], f.Path)
	}
	var kept []File
	var problems []yamldoc.Problem
	for _, f := range files {
		td := f.Relationship.TrustDomain
		if len(byTD[td]) == 1 {
			kept = append(kept, f)
			continue
		}
		others := slices.DeleteFunc(slices.Clone(byTD[td]), func(p string) bool { return p == f.Path })
		problems = append(problems, yamldoc.Problem{File: f.Path, Line: f.trustDomainLine, Message: fmt.Sprintf(
			"trust domain %s is also defined in %s; none of these files is used until only one defines it",
			td.Name(), strings.Join(others, ", "))})
	}
	return kept, problems
}
