package record_test

import (
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestFloors: package record sits on floor 3 beside sync
// (docs/ARCHITECTURE.md, "Layers"): its non-test files import no FDP
// package but layout, so that host (recording) and cli (dump, replay) may
// use it, and a decoder of the stream needs nothing of the engine.
func TestFloors(t *testing.T) {
	for f, imports := range testutil.PackageImports(t) {
		for _, p := range imports {
			require.Equal(t, "layout", p, "%s imports %s", f, p)
		}
	}
}
