package onboarding

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// readDocument parses data as one YAML document and returns its top-level
// mapping, or nil after recording why there is nothing to decode.
func readDocument(data []byte, ps *problems) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on crafted input before; a file from a pull
		// request must never bring the server down.
		if r := recover(); r != nil {
			root = nil
			ps.add(0, "cannot read the file as YAML: %v", r)
		}
	}()
	ps.lastLine = lastLine(data)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.add(0, "the file is empty; it needs at least trustDomain, bundleEndpointURL and bundleEndpointProfile")
			return nil
		}
		ps.syntax(err)
		return nil
	}
	root = resolve(documentRoot(&doc))
	if !checkRoot(root, ps) {
		return nil
	}
	checkSingleDocument(dec, ps)
	return root
}

// documentRoot returns the content of a document node.
func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

// checkRoot reports a top level that is empty or not a mapping.
func checkRoot(root *yaml.Node, ps *problems) bool {
	switch {
	case root == nil || isNull(root):
		ps.add(0, "the file is empty; it needs at least trustDomain, bundleEndpointURL and bundleEndpointProfile")
		return false
	case root.Kind != yaml.MappingNode:
		ps.add(root.Line, "the top level must be a mapping (a ClusterFederatedTrustDomain or its spec), got %s", describe(root))
		return false
	}
	return true
}

// checkSingleDocument reports a second, non-empty document after the
// first: a file describes one relationship, so a second one would be
// silently lost.
func checkSingleDocument(dec *yaml.Decoder, ps *problems) {
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return
	case err != nil:
		ps.syntax(err)
		return
	}
	if root := documentRoot(&doc); root != nil && !isNull(root) {
		ps.add(root.Line, "the file holds more than one YAML document; put each ClusterFederatedTrustDomain in a file of its own")
	}
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	const maxAliases = 32 // aliases cannot chain in YAML; this is a backstop
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliases {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names the kind of value n holds, for messages.
func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!bool":
		return "the boolean " + n.Value
	case n.Tag == "!!int" || n.Tag == "!!float":
		return "the number " + n.Value
	}
	return quote(n.Value)
}

// quote quotes a value from the file for a message, shortening a long one.
func quote(s string) string {
	const maxRunes = 60
	if r := []rune(s); len(r) > maxRunes {
		return fmt.Sprintf("%q…", string(r[:maxRunes]))
	}
	return fmt.Sprintf("%q", s)
}

// lastLine returns the number of the last line of data, counting line
// breaks as YAML 1.1 and yaml.v3 do: LF, CR or CRLF, NEL, LS and PS.
func lastLine(data []byte) int {
	breaks := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n"))
	for _, b := range []string{"\u0085", "\u2028", "\u2029"} {
		breaks += bytes.Count(data, []byte(b))
	}
	if len(data) == 0 || bytes.ContainsAny(data[len(data)-1:], "\n\r") {
		return max(breaks, 1)
	}
	return breaks + 1
}
