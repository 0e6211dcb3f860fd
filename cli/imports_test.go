package cli

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWorldAgnostic: package cli knows no world; its files import neither
// the demo nor an example nor a command of this repository (they build on
// cli, docs/ARCHITECTURE.md "Layers").
func TestWorldAgnostic(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, im := range af.Imports {
			p, err := strconv.Unquote(im.Path.Value)
			require.NoError(t, err)
			rest, ok := strings.CutPrefix(p, "github.com/fdp-engine/fdp/")
			if !ok {
				continue
			}
			top, _, _ := strings.Cut(rest, "/")
			require.NotContains(t, []string{"demo", "examples", "cmd", "tests"}, top, "%s imports %s", f, p)
		}
		checked++
	}
	require.Positive(t, checked)
}
