package audit_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFloors: package audit sits on the floor of world (docs/ARCHITECTURE.md,
// "Layers"): its non-test files import no FDP package but layout and world,
// so that every floor above (sync, host, tests, cmd) may use it.
func TestFloors(t *testing.T) {
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
			if rest, ok := strings.CutPrefix(p, "github.com/fdp-engine/fdp/"); ok {
				require.Contains(t, []string{"layout", "world"}, rest, "%s imports %s", f, p)
			}
		}
		checked++
	}
	require.Positive(t, checked)
}
