package audit_test

import (
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestFloors: package audit sits on the floor of world (docs/ARCHITECTURE.md,
// "Layers"): its non-test files import no FDP package but layout and world,
// so that every floor above (sync, host, tests, cmd) may use it.
func TestFloors(t *testing.T) {
	for f, imports := range testutil.PackageImports(t) {
		for _, p := range imports {
			require.Contains(t, []string{"layout", "world"}, p, "%s imports %s", f, p)
		}
	}
}
