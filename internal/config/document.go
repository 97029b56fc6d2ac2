package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// readDocument parses data as one YAML document and returns its top-level
// mapping together with problems that do not stop decoding. It returns a nil
// node, and the reason, when there is nothing to decode.
func readDocument(data []byte) (root *yaml.Node, problems []Problem) {
	defer func() {
		// yaml.v3 has panicked on crafted input before; a bad file must
		// never bring the server down.
		if r := recover(); r != nil {
			root, problems = nil, []Problem{{Message: fmt.Sprintf("cannot read the file as YAML: %v", r)}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []Problem{emptyFile()}
		}
		return nil, []Problem{syntaxProblem(err)}
	}
	root = resolve(documentRoot(&doc))
	if p := checkRoot(root); p != nil {
		return nil, []Problem{*p}
	}
	if p := checkSingleDocument(dec); p != nil {
		problems = append(problems, *p)
	}
	return root, problems
}

func emptyFile() Problem {
	return Problem{Message: "the file is empty; it needs at least trust_domain, e.g. trust_domain: example.org"}
}

// documentRoot returns the content of a document node.
func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

// checkRoot reports a top level that is empty or not a mapping.
func checkRoot(root *yaml.Node) *Problem {
	switch {
	case root == nil || isNull(root):
		p := emptyFile()
		return &p
	case root.Kind != yaml.MappingNode:
		return &Problem{Line: root.Line, Message: fmt.Sprintf(
			"the top level must be a mapping of keys such as trust_domain: example.org, got %s", describe(root))}
	}
	return nil
}

// checkSingleDocument reports a second, non-empty document after the first.
func checkSingleDocument(dec *yaml.Decoder) *Problem {
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		p := syntaxProblem(err)
		return &p
	}
	root := documentRoot(&doc)
	if root == nil || isNull(root) {
		return nil
	}
	return &Problem{Line: doc.Line, Message: "the file holds more than one YAML document; " +
		"treaty reads a single one, so remove this --- line and merge the documents"}
}

// yamlLine matches the position yaml.v3 puts in front of its messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxProblem turns a yaml.v3 syntax error into a Problem at its line.
func syntaxProblem(err error) Problem {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	return Problem{Line: line, Message: "not valid YAML: " + msg}
}
