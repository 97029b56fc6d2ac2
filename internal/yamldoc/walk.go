package yamldoc

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Schema is the shape of a document: the keys each of its mappings may
// hold, by section. A section is named by its dotted key path: "" for the
// top level, "ca" or "spec.bundleEndpointProfile" below it. The mappings
// of a list share the list's section, such as "peers".
type Schema map[string]Section

// Section is one mapping of a Schema.
type Section struct {
	// Keys are the keys the mapping may hold, in the order messages list
	// them; nil accepts any key.
	Keys []string
	// Example shows the mapping written out, for the message about a value
	// that is not a mapping; empty lists Keys instead.
	Example string
}

// Entry is one key of a mapping with its value. An absent key is the zero
// Entry. For an item of a list, Key and Value are both the item.
type Entry struct {
	Key, Value *yaml.Node
}

// Line returns the line of e's key, or 0 for an absent entry.
func (e Entry) Line() int {
	if e.Key == nil {
		return 0
	}
	return e.Key.Line
}

// Mapping returns the entries of n by key. n is a mapping of section sec
// of s, found at field: the section's path, or with the indexes of the
// lists on the way, as in "peers[2]". Mapping reports unknown, duplicate,
// merge and non-word keys. A missing n gives nil, a null n an empty map,
// and any other value that is not a mapping nil and a problem.
func (d *Document) Mapping(n *yaml.Node, s Schema, sec, field string) map[string]Entry {
	n = Resolve(n)
	switch {
	case n == nil:
		return nil
	case IsNull(n):
		return map[string]Entry{}
	case n.Kind != yaml.MappingNode:
		d.Add(n.Line, field, "%s must be a mapping, got %s; %s", field, Describe(n), s.shape(sec))
		return nil
	}
	m := make(map[string]Entry, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		d.entry(Entry{Key: Resolve(n.Content[i]), Value: n.Content[i+1]}, s, sec, field, m)
	}
	return m
}

// shape says how the mapping of section sec is written.
func (s Schema) shape(sec string) string {
	if ex := s[sec].Example; ex != "" {
		return "write it like " + ex
	}
	return "its keys are " + strings.Join(s[sec].Keys, ", ")
}

// entry adds e to the entries m of section sec at field, or reports why
// not.
func (d *Document) entry(e Entry, s Schema, sec, field string, m map[string]Entry) {
	k := e.Key
	switch {
	case k == nil || k.Kind != yaml.ScalarNode:
		d.Add(lineOf(k, e.Value), "", "keys must be plain words, got %s", Describe(k))
	case k.Tag == "!!merge":
		d.Add(k.Line, "", "merge keys (<<) are not supported; write the keys out")
	case s[sec].Keys != nil && !slices.Contains(s[sec].Keys, k.Value):
		msg, meant := s.unknownKey(sec, field, k.Value)
		d.Add(k.Line, "", "%s", msg)
		d.markMisspelt(sec, meant)
	case m[k.Value].Key != nil:
		d.Add(k.Line, "", "duplicate key %s; it is already set on line %d", Quote(k.Value), m[k.Value].Key.Line)
	default:
		m[k.Value] = e
	}
}

// unknownKey says that key is not one of section sec's, found at field,
// and suggests what was meant. meant is the key of sec that key misspells,
// if any.
func (s Schema) unknownKey(sec, field, key string) (msg, meant string) {
	where := "at the top level"
	if field != "" {
		where = "in " + field
	}
	msg = fmt.Sprintf("unknown key %s %s; the known keys are %s", Quote(key), where, strings.Join(s[sec].Keys, ", "))
	meant = s.closest(sec, key)
	switch {
	case meant != "" && strings.EqualFold(meant, key):
		return msg + fmt.Sprintf("; did you mean %s? keys are case-sensitive", meant), meant
	case meant != "":
		return msg + fmt.Sprintf("; did you mean %s?", meant), meant
	}
	var holders []string
	for name, other := range s {
		if name != sec && slices.ContainsFunc(other.Keys, func(k string) bool { return strings.EqualFold(k, key) }) {
			holders = append(holders, name)
		}
	}
	return msg + moveTo(holders), ""
}

// closest returns the key of section sec that key misspells: the one that
// differs only in case, else the nearest within a third of its length
// (the first of equals), else "".
func (s Schema) closest(sec, key string) string {
	const maxLen = 64 // keep the edit distance cheap on garbage input
	keys := s[sec].Keys
	if i := slices.IndexFunc(keys, func(k string) bool { return strings.EqualFold(k, key) }); i >= 0 {
		return keys[i]
	}
	if len(key) > maxLen {
		return ""
	}
	best, bestDist := "", 0
	for _, k := range keys {
		dist := distance(strings.ToLower(key), strings.ToLower(k))
		if dist <= max(1, len(k)/3) && (best == "" || dist < bestDist) {
			best, bestDist = k, dist
		}
	}
	return best
}

// moveTo says where to move a key that the sections holders hold.
func moveTo(holders []string) string {
	slices.Sort(holders)
	switch {
	case len(holders) == 0:
		return ""
	case holders[0] == "" && len(holders) == 1:
		return "; move it to the top level"
	case holders[0] == "":
		return "; move it to the top level or under " + strings.Join(holders[1:], " or ")
	}
	return "; move it under " + strings.Join(holders, " or ")
}

// distance returns the Levenshtein edit distance between a and b in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Scalar returns the value of e, resolved, when it is a scalar, and true.
// An absent or null value gives nil and true; a value that is not a
// scalar gives nil and false after a problem saying that field must be
// want ("text", "a duration").
func (d *Document) Scalar(e Entry, field, want string) (*yaml.Node, bool) {
	n := Resolve(e.Value)
	switch {
	case n == nil || IsNull(n):
		return nil, true
	case n.Kind != yaml.ScalarNode:
		d.Add(lineOf(e.Key, n), field, "%s must be %s, got %s", field, want, Describe(n))
		return nil, false
	}
	return n, true
}

// Text returns the text of e, "" when it is absent or null, and false after
// a problem when it is not text. An unquoted true or false is not text:
// someone who wrote it most likely meant a switch.
func (d *Document) Text(e Entry, field string) (string, bool) {
	n, ok := d.Scalar(e, field, "text")
	switch {
	case n == nil:
		return "", ok
	case n.Tag == "!!bool":
		d.Add(lineOf(e.Key, n), field, "%s must be text, got %s; quote it if you mean the word", field, Describe(n))
		return "", false
	}
	return n.Value, true
}

// Bool sets *dst to the boolean e holds (true or false, in any case). It
// leaves *dst alone when e is absent or null, and returns false after a
// problem when e holds anything else.
func (d *Document) Bool(e Entry, field string, dst *bool) bool {
	n, ok := d.Scalar(e, field, "true or false")
	if n == nil {
		return ok
	}
	switch strings.ToLower(n.Value) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		d.Add(lineOf(e.Key, n), field, "%s must be true or false, got %s", field, Describe(n))
		return false
	}
	return true
}

// List returns the items of e, a list, each as an Entry with e's key. An
// absent or null value gives nil and true; anything else that is not a
// list gives nil and false after a problem that shows example.
func (d *Document) List(e Entry, field, example string) ([]Entry, bool) {
	n := Resolve(e.Value)
	switch {
	case n == nil || IsNull(n):
		return nil, true
	case n.Kind != yaml.SequenceNode:
		d.Add(lineOf(e.Key, n), field, "%s must be a list, got %s; e.g. %s", field, Describe(n), example)
		return nil, false
	}
	items := make([]Entry, len(n.Content))
	for i, item := range n.Content {
		items[i] = Entry{Key: e.Key, Value: item}
	}
	return items, true
}

// Join returns the path of key inside the section at path ("" for the top
// level), as Schema names sections.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
