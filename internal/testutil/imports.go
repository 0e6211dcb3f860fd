package testutil

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// modulePath is the import path of this repository's module.
const modulePath = "github.com/fdp-engine/fdp/"

// PackageImports returns, for each non-test Go file of the test's package
// directory, the packages of this repository it imports, as paths relative
// to the module ("layout", "sync"). The floors tests check them against
// docs/ARCHITECTURE.md "Layers". It fails the test when there is no such
// file, so that a check over it cannot pass vacuously.
func PackageImports(t testing.TB) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = []string{}
		for _, im := range af.Imports {
			p, err := strconv.Unquote(im.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if rest, ok := strings.CutPrefix(p, modulePath); ok {
				out[f] = append(out[f], rest)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no Go files in the package directory")
	}
	return out
}
