package cli

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/treatyhq/treaty/"

// serverOnly are the packages behind the admin socket. The CLI is a client:
// it speaks the wire contract (internal/adminwire) and must not link the
// implementation, or every client build carries the CA, the store and the
// refresher, and a change to them can break the CLI.
var serverOnly = []string{
	"internal/adminapi",
	"internal/ca",
	"internal/keystore",
	"internal/datastore",
	"internal/datastore/sqlite",
	"internal/federation",
	"internal/server",
	"internal/servercmd",
	"internal/demo",
	"internal/bundleendpoint",
	"internal/workloadapi",
	"internal/invite",
	"internal/doctor",
	"internal/dashboard",
	"internal/telemetry",
	"internal/config",
}

// stillLinked are server packages the CLI still reaches, only through the
// packages named in via, and why. Shrink this list; never grow it.
var stillLinked = map[string]struct {
	via []string
	why string
}{
	"internal/federation": {
		via: []string{"internal/onboarding"},
		why: "onboarding check parses files into federation.Relationship; moving the relationship vocabulary out of federation removes this",
	},
	"internal/datastore": {
		via: []string{"internal/onboarding", "internal/federation"},
		why: "the onboarding Reconciler and federation's Refresher keep datastore records, in the packages the CLI needs for the above",
	},
}

// TestClientDoesNotLinkServer walks the non-test imports of this package,
// recursively through the module's own packages.
func TestClientDoesNotLinkServer(t *testing.T) {
	graph := importGraph(t, "internal/cli")
	for _, pkg := range serverOnly {
		chain := importChain(graph, "internal/cli", pkg, nil)
		allowed, known := stillLinked[pkg]
		switch {
		case chain == nil && known:
			t.Errorf("internal/cli no longer reaches %s: remove it from stillLinked", pkg)
		case chain == nil:
		case !known:
			t.Errorf("internal/cli links the server package %s (%s): the CLI is a client and must import the wire contract "+
				"(internal/adminwire) or a shared vocabulary package, never the server implementation", pkg, strings.Join(chain, " → "))
		default:
			if other := importChain(graph, "internal/cli", pkg, allowed.via); other != nil {
				t.Errorf("internal/cli reaches %s by a new path (%s); it is tolerated only through %s, because %s",
					pkg, strings.Join(other, " → "), strings.Join(allowed.via, ", "), allowed.why)
			}
		}
	}
}

// importGraph maps each of the module's packages reachable from root to its
// imports within the module, read from the non-test Go files.
func importGraph(t *testing.T, root string) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	queue := []string{root}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		if _, done := graph[pkg]; done {
			continue
		}
		graph[pkg] = moduleImports(t, pkg)
		queue = append(queue, graph[pkg]...)
	}
	return graph
}

// moduleImports returns the module's packages that pkg's non-test files
// import, as paths relative to the module.
func moduleImports(t *testing.T, pkg string) []string {
	t.Helper()
	dir := filepath.Join("..", "..", filepath.FromSlash(pkg))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read package %s: %v", pkg, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, e.Name()), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("parse %s: %v", e.Name(), err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(path, module); ok && !slices.Contains(out, rel) {
				out = append(out, rel)
			}
		}
	}
	return out
}

// importChain returns a path of imports from one package to another that
// passes through none of the packages in avoid, or nil.
func importChain(graph map[string][]string, from, to string, avoid []string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		if pkg == to {
			var chain []string
			for p := to; p != ""; p = prev[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		for _, next := range graph[pkg] {
			if _, seen := prev[next]; !seen && !slices.Contains(avoid, next) {
				prev[next] = pkg
				queue = append(queue, next)
			}
		}
	}
	return nil
}
