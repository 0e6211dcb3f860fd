package cli

import (
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestWorldAgnostic: package cli knows no world; its files import neither
// the demo nor an example nor a command of this repository (they build on
// cli, docs/ARCHITECTURE.md "Layers").
func TestWorldAgnostic(t *testing.T) {
	for f, imports := range testutil.PackageImports(t) {
		for _, p := range imports {
			top, _, _ := strings.Cut(p, "/")
			require.NotContains(t, []string{"demo", "examples", "cmd", "tests"}, top, "%s imports %s", f, p)
		}
	}
}
