// Package onboarding reads a directory of onboarding files into federation
// relationships. An onboarding file is a ClusterFederatedTrustDomain, the
// resource spire-controller-manager reconciles into SPIRE, or just its spec:
// the format real federations exchange by pull request, one file per
// member. Reading is strict (unknown keys are errors, so that a typo never
// silently drops a setting) and every problem carries its line, so that
// `treaty onboarding check` can point a reviewer at it.
package onboarding

import (
	"cmp"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/signedbundle"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

// MaxFileSize is the size in bytes of the largest onboarding file read. A
// ClusterFederatedTrustDomain with a bundle of a few keys takes a few
// kilobytes.
const MaxFileSize = 1 << 20

// ManagedByPrefix starts the ManagedBy of every relationship read from an
// onboarding file; the base name of the file follows it.
const ManagedByPrefix = "onboarding:"

// File is one onboarding file that parsed cleanly.
type File struct {
	// Path is the file's path as found in the directory.
	Path string
	// Name is metadata.name, or the file name without its extension when
	// the file has no metadata.name (always so for a bare spec).
	Name string
	// ClassName is spec.className: which controller class the file is
	// for. Empty means any.
	ClassName string
	// Relationship is the relationship the file describes. Its ManagedBy
	// is ManagedByPrefix followed by the base name of Path.
	Relationship federation.Relationship
	// Warnings are about things that work but deserve attention, such as
	// what the bundle parser skipped.
	Warnings []string

	trustDomainLine int // the line of trustDomain, for directory problems
	bundleText      []byte
	bundleLine      int // the line of trustDomainBundle
	signed          *signedbundle.Signed
	pin             string
}

// Parse parses data, the content of the onboarding file at path, which is
// used in problems and for the File's ManagedBy and default Name. The file
// holds either a whole ClusterFederatedTrustDomain (apiVersion
// spire.spiffe.io/v1alpha1) or its spec alone, at the top level. Besides
// the CRD's bundleEndpointURL, the spec may list bundleEndpointURLs, tried
// in order after bundleEndpointURL.
//
// Parse returns either a File and no problems, or a nil File and every
// problem it found. Parse does not panic, whatever data holds.
func Parse(data []byte, path string) (*File, []yamldoc.Problem) {
	f, _, ps := parse(data, path)
	return f, ps
}

// parse is Parse that also returns the className, which is known even for
// a file with problems as long as the file is valid YAML.
func parse(data []byte, path string) (*File, string, []yamldoc.Problem) {
	doc, root := yamldoc.Read(path, data, readOptions)
	ps := &problems{doc}
	if root == nil {
		return nil, "", ps.Problems
	}
	d := &decoder{ps: ps}
	name, spec := d.file(root)
	if spec == nil {
		return nil, "", sorted(ps.Problems)
	}
	b := &builder{ps: ps}
	b.build(spec)
	b.rel.ManagedBy = ManagedByPrefix + baseName(path)
	if len(ps.Problems) == 0 {
		if err := b.rel.Validate(); err != nil {
			ps.add(spec.line, "%v", err)
		}
	}
	if len(ps.Problems) > 0 {
		return nil, spec.className.text, sorted(ps.Problems)
	}
	return &File{
		Path:            path,
		Name:            cmp.Or(name, strings.TrimSuffix(baseName(path), filepath.Ext(path))),
		ClassName:       spec.className.text,
		Relationship:    b.rel,
		Warnings:        b.warnings,
		trustDomainLine: spec.trustDomain.line,
		bundleText:      b.bundleText,
		bundleLine:      b.bundleLine,
		signed:          b.signed,
		pin:             b.pin,
	}, spec.className.text, nil
}

// baseName returns the last element of path, or "" for an empty path.
func baseName(path string) string {
	if path == "" {
		return ""
	}
	return filepath.Base(path)
}

// maxProblems is the number of problems reported for one file; a file
// with more is likely not an onboarding file at all.
const maxProblems = 50

// sorted orders problems by line, keeping the order of those on one line,
// and replaces those after the first maxProblems with a count.
func sorted(ps []yamldoc.Problem) []yamldoc.Problem {
	yamldoc.SortByLine(ps)
	if len(ps) <= maxProblems {
		return ps
	}
	rest := ps[maxProblems]
	rest.Message = fmt.Sprintf("%d more problems not listed; fix the ones above first", len(ps)-maxProblems)
	return append(ps[:maxProblems], rest)
}
