package yamldoc

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var opts = Options{Needs: "at least name", TopLevel: "of keys such as name: x", OneDocument: "keep one"}

var schema = Schema{
	"":       {Keys: []string{"name", "server"}},
	"server": {Keys: []string{"address", "port"}, Example: "server: {address: a, port: 1}"},
}

// problems reads data and walks its top level and server section.
func problems(t *testing.T, data string) []Problem {
	t.Helper()
	d, root := Read("f.yaml", []byte(data), opts)
	if root != nil {
		m := d.Mapping(root, schema, "", "")
		d.Text(m["name"], "name")
		d.Mapping(m["server"].Value, schema, "server", "server")
	}
	return d.Problems
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		line       int
		want       string
	}{
		{"ok/plain", "name: x\nserver: {address: a}\n", 0, ""},
		{"fail/empty", "", 0, "the file is empty; it needs at least name"},
		{"fail/null document", "---\n", 0, "the file is empty"},
		{"fail/list", "- a\n", 1, "the top level must be a mapping of keys such as name: x, got a list"},
		{"fail/scanner error", "name: x\n  bad: y\n", 2, "not valid YAML: mapping values are not allowed"},
		{"fail/parser error counts lines from 1", "name: x\nserver: {address: a\n", 2, "not valid YAML: did not find expected ',' or '}'"},
		{"fail/two documents", "name: x\n---\nname: y\n", 2, "more than one YAML document, the second starting here; keep one"},
		{"fail/too large", "name: " + strings.Repeat("x", DefaultMaxSize) + "\n", 0, "larger than 1048576 bytes"},
		{"fail/too deep", "name: " + strings.Repeat("[", DefaultMaxDepth+1) + strings.Repeat("]", DefaultMaxDepth+1) + "\n", 1, "nests deeper than 64 levels"},
		{"fail/too many aliases", "name: &a x\nserver: [" + strings.Repeat("*a, ", DefaultMaxAliases) + "*a]\n", 2, "more than 100 aliases"},
		{"fail/recursive alias is only a wrong value", "name: &a [*a]\n", 1, "name must be text, got a list"},
		{"fail/unknown key with typo", "nam: x\n", 1, `unknown key "nam" at the top level; the known keys are name, server; did you mean name?`},
		{"fail/unknown key in the wrong section", "port: 1\n", 1, "; move it under server"},
		{"fail/unknown key case", "server: {Port: 1}\n", 1, `unknown key "Port" in server; the known keys are address, port; did you mean port? keys are case-sensitive`},
		{"fail/duplicate key", "name: x\nname: y\n", 2, `duplicate key "name"; it is already set on line 1`},
		{"fail/merge key", "server: {<<: {port: 1}}\n", 1, "merge keys (<<) are not supported"},
		{"fail/key not a word", "? [a]\n: b\n", 1, "keys must be plain words, got a list"},
		{"fail/not a mapping", "server: 5\n", 1, "server must be a mapping, got the number 5; write it like server: {address: a, port: 1}"},
		{"fail/boolean as text", "name: true\n", 1, "name must be text, got the boolean true; quote it if you mean the word"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.data)
			if tc.want == "" {
				require.Empty(t, ps)
				return
			}
			require.NotEmpty(t, ps)
			require.Equal(t, tc.line, ps[0].Line, "%v", ps)
			require.Contains(t, ps[0].Message, tc.want)
			require.Equal(t, "f.yaml", ps[0].File)
		})
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Problem
		want string
	}{
		{"ok/file line field", Problem{File: "a.yaml", Line: 3, Field: "ca.ca_ttl", Message: `"7x" is not a duration`}, `a.yaml:3: ca.ca_ttl: "7x" is not a duration`},
		{"ok/field already in the message", Problem{File: "a.yaml", Line: 3, Field: "ca", Message: "ca must be a mapping"}, "a.yaml:3: ca must be a mapping"},
		{"ok/no line", Problem{File: "a.yaml", Message: "bad"}, "a.yaml: bad"},
		{"ok/no file", Problem{Line: 3, Message: "bad"}, "line 3: bad"},
		{"ok/message only", Problem{Message: "bad"}, "bad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.p.String())
		})
	}
}

func TestError(t *testing.T) {
	ps := []Problem{{Line: 2, Message: "b"}, {Line: 1, Message: "a"}}
	SortByLine(ps)
	require.Equal(t, "cfg.yaml: 2 problems:\n  line 1: a\n  line 2: b", (&Error{Source: "cfg.yaml", Problems: ps}).Error())
	require.Equal(t, "line 1: a\nline 2: b", (&Error{Problems: ps}).Error())
	require.Equal(t, "cfg.yaml: 1 problem:\n  line 1: a", (&Error{Source: "cfg.yaml", Problems: ps[:1]}).Error())
}

func TestBool(t *testing.T) {
	d, root := Read("", []byte("a: true\nb: FALSE\nc: maybe\n"), opts)
	m := d.Mapping(root, Schema{"": {Keys: []string{"a", "b", "c", "d"}}}, "", "")
	var a, b, c, dd bool
	require.True(t, d.Bool(m["a"], "a", &a))
	b = true
	require.True(t, d.Bool(m["b"], "b", &b))
	require.False(t, d.Bool(m["c"], "c", &c))
	require.True(t, d.Bool(m["d"], "d", &dd), "absent is fine")
	require.True(t, a)
	require.False(t, b)
	require.Equal(t, []Problem{{Line: 3, Field: "c", Message: `c must be true or false, got "maybe"`}}, d.Problems)
}

// TestMisspelt: the nearest key is suggested, not the first near enough,
// and the document remembers it so that a caller does not also report the
// key as missing.
func TestMisspelt(t *testing.T) {
	s := Schema{"": {Keys: []string{"bundleEndpointURL", "bundleEndpointProfile"}}}
	d, root := Read("f.yaml", []byte("bundleEndpointProfle: x\n"), Options{})
	d.Mapping(root, s, "", "")
	require.Len(t, d.Problems, 1)
	require.Contains(t, d.Problems[0].Message, "did you mean bundleEndpointProfile?")
	require.True(t, d.Misspelt("", "bundleEndpointProfile"))
	require.False(t, d.Misspelt("", "bundleEndpointURL"))
}

func TestList(t *testing.T) {
	d, root := Read("", []byte("a: [x, y]\nb: ~\nc: x\n"), opts)
	m := d.Mapping(root, Schema{"": {Keys: []string{"a", "b", "c", "d"}}}, "", "")
	items, ok := d.List(m["a"], "a", "a: [x]")
	require.True(t, ok)
	require.Len(t, items, 2)
	got, _ := d.Text(items[1], "a[1]")
	require.Equal(t, "y", got)
	items, ok = d.List(m["b"], "b", "b: [x]")
	require.True(t, ok, "null is an empty list")
	require.Empty(t, items)
	_, ok = d.List(m["d"], "d", "d: [x]")
	require.True(t, ok, "absent is fine")
	_, ok = d.List(m["c"], "c", "c: [x]")
	require.False(t, ok)
	require.Equal(t, []Problem{{Line: 3, Field: "c", Message: `c must be a list, got "x"; e.g. c: [x]`}}, d.Problems)
}
