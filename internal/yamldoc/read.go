// Package yamldoc reads the YAML documents operators give treaty: the
// configuration file, onboarding files and topology descriptions. It owns
// what their loaders share: parsing bytes into a yaml.v3 node tree within
// limits (size, nesting, aliases), one document per file with a mapping at
// the top, walking mappings against a Schema of known keys (unknown,
// duplicate, merge and non-word keys are problems, with a "did you mean"),
// values of the wrong kind, and Problem, a message at a line that prints as
// "file:line: field: message". Each loader keeps its own schema and turns
// the nodes into its own typed values, reporting every problem at once.
package yamldoc

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits of a document a Document reads, unless Options say otherwise. A
// hand-written configuration, onboarding or topology file is far below
// each; a document above one is a mistake or an attack.
const (
	// DefaultMaxSize is the largest document read, in bytes.
	DefaultMaxSize = 1 << 20
	// DefaultMaxDepth is the deepest nesting of mappings and lists.
	DefaultMaxDepth = 64
	// DefaultMaxAliases is the most aliases (*name) a document may use,
	// which bounds what a walk that follows them can visit.
	DefaultMaxAliases = 100
)

// Options say what a document must hold, for the messages about one that
// does not, and its limits. A zero limit means the default.
type Options struct {
	MaxSize    int
	MaxDepth   int
	MaxAliases int
	// Needs says what an empty document lacks, e.g. "trust_domain, e.g.
	// trust_domain: example.org".
	Needs string
	// TopLevel describes the top-level mapping, e.g. "(a
	// ClusterFederatedTrustDomain or its spec)".
	TopLevel string
	// OneDocument says what to do instead of a second document in the file.
	OneDocument string
	// TooLarge explains the size limit, e.g. "an onboarding file holds one
	// trust domain and its bundle".
	TooLarge string
}

// Document is one YAML document being read, with the problems found in it
// so far. Its methods record problems and carry on, so that a loader
// reports every problem at once.
type Document struct {
	// File is set on every problem recorded; empty leaves it out.
	File string
	// Problems are the problems found so far, in the order found.
	Problems []Problem

	lastLine int // the last line of the document
	// misspelt holds the keys, by section, that an unknown key was
	// reported as misspelling.
	misspelt map[string]bool
}

// Misspelt reports whether an unknown key of section sec was reported as a
// misspelling of key ("did you mean key?"): a caller that finds key
// missing need not say so a second time.
func (d *Document) Misspelt(sec, key string) bool { return d.misspelt[sec+"\x00"+key] }

func (d *Document) markMisspelt(sec, key string) {
	if key == "" {
		return
	}
	if d.misspelt == nil {
		d.misspelt = map[string]bool{}
	}
	d.misspelt[sec+"\x00"+key] = true
}

// Read parses data as a single YAML document. It returns the Document, to
// record further problems in, and the top-level mapping, which is nil when
// data is not one YAML document with a mapping at the top (the Document's
// problems say why). Read does not panic, whatever data holds.
func Read(file string, data []byte, opts Options) (d *Document, root *yaml.Node) {
	d = &Document{File: file, lastLine: LastLine(data)}
	defer func() {
		// yaml.v3 has panicked on crafted input before; a bad file must
		// never bring the server down.
		if r := recover(); r != nil {
			root = nil
			d.Add(0, "", "cannot read the file as YAML: %v", r)
		}
	}()
	if limit := cmp.Or(opts.MaxSize, DefaultMaxSize); len(data) > limit {
		d.Add(0, "", "the file is larger than %d bytes%s", limit, clause(opts.TooLarge))
		return d, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.Add(0, "", "the file is empty; it needs %s", opts.Needs)
			return d, nil
		}
		d.syntax(err)
		return d, nil
	}
	root = Resolve(documentRoot(&doc))
	if !d.checkRoot(root, opts) || !d.checkLimits(&doc, opts) {
		return d, nil
	}
	d.checkSingleDocument(dec, opts)
	return d, root
}

// Add records a problem at line about field (empty for none).
func (d *Document) Add(line int, field, format string, args ...any) {
	d.Problems = append(d.Problems, Problem{File: d.File, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

// documentRoot returns the content of a document node.
func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

// checkRoot reports a top level that is empty or not a mapping.
func (d *Document) checkRoot(root *yaml.Node, opts Options) bool {
	switch {
	case root == nil || IsNull(root):
		d.Add(0, "", "the file is empty; it needs %s", opts.Needs)
		return false
	case root.Kind != yaml.MappingNode:
		d.Add(root.Line, "", "the top level must be a mapping %s, got %s", opts.TopLevel, Describe(root))
		return false
	}
	return true
}

// checkLimits reports a document nested deeper or using more aliases than
// opts allow. It does not follow aliases, so it ends on recursive ones.
func (d *Document) checkLimits(doc *yaml.Node, opts Options) bool {
	maxDepth, maxAliases := cmp.Or(opts.MaxDepth, DefaultMaxDepth), cmp.Or(opts.MaxAliases, DefaultMaxAliases)
	type item struct {
		n     *yaml.Node
		depth int
	}
	aliases, stack := 0, []item{{doc, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch {
		case it.depth > maxDepth:
			d.Add(it.n.Line, "", "the document nests deeper than %d levels; treaty reads plain files, not generated structures", maxDepth)
			return false
		case it.n.Kind == yaml.AliasNode:
			if aliases++; aliases > maxAliases {
				d.Add(it.n.Line, "", "the document uses more than %d aliases (*name); write the values out", maxAliases)
				return false
			}
		}
		for _, c := range it.n.Content {
			stack = append(stack, item{c, it.depth + 1})
		}
	}
	return true
}

// checkSingleDocument reports a second, non-empty document after the first:
// whatever it says would be silently lost.
func (d *Document) checkSingleDocument(dec *yaml.Decoder, opts Options) {
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return
	case err != nil:
		d.syntax(err)
		return
	}
	if root := documentRoot(&doc); root != nil && !IsNull(root) {
		d.Add(doc.Line, "", "the file holds more than one YAML document, the second starting here%s", clause(opts.OneDocument))
	}
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
func (d *Document) syntax(err error) {
	msg, line := err.Error(), 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
		if slices.Contains(parserProblems, msg) {
			line++
		}
		if d.lastLine > 0 {
			line = min(line, d.lastLine) // yaml.v3 puts the end of the file on a line of its own
		}
	}
	d.Add(line, "", "not valid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// LastLine returns the number of the last line of data, counting line
// breaks as YAML 1.1 and yaml.v3 do (LF, CR or CRLF, NEL, LS and PS): no
// problem Read records is on a later one.
func LastLine(data []byte) int {
	breaks := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n"))
	for _, b := range []string{"\u0085", "\u2028", "\u2029"} {
		breaks += bytes.Count(data, []byte(b))
	}
	if len(data) == 0 || bytes.ContainsAny(data[len(data)-1:], "\n\r") {
		return max(breaks, 1)
	}
	return breaks + 1
}

// clause returns "; s", or "" for an empty s.
func clause(s string) string {
	if s == "" {
		return ""
	}
	return "; " + s
}
