package yamldoc

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Resolve follows aliases to the node they name; nil stays nil.
func Resolve(n *yaml.Node) *yaml.Node {
	const maxAliases = 32 // aliases cannot chain in YAML; this is a backstop
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliases {
			return nil
		}
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is a null scalar: ~, null or no value at all.
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// Describe names the kind of value n holds, for messages: "a mapping",
// "a list", "the boolean true", "the number 5" or the quoted text.
func Describe(n *yaml.Node) string {
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
	return Quote(n.Value)
}

// Quote quotes a value from a document for a message, shortening a long
// one.
func Quote(s string) string {
	const maxRunes = 60
	if r := []rune(s); len(r) > maxRunes {
		return fmt.Sprintf("%q…", string(r[:maxRunes]))
	}
	return fmt.Sprintf("%q", s)
}

// lineOf returns the line of the first of nodes that is not nil.
func lineOf(nodes ...*yaml.Node) int {
	for _, n := range nodes {
		if n != nil {
			return n.Line
		}
	}
	return 0
}
