package remote_test

import (
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestFloors: package remote sits on floor 7 (docs/ARCHITECTURE.md,
// "Layers"): its non-test files import only floors below it (the engine
// for the mirror, sync and record for the bridge, ipc for remote batches),
// never the supervisor, inspect, cli or a world.
func TestFloors(t *testing.T) {
	allowed := map[string]bool{"layout": true, "world": true, "shm": true, "sync": true, "record": true, "ipc": true, "host": true}
	for f, imports := range testutil.PackageImports(t) {
		for _, p := range imports {
			require.True(t, allowed[p], "%s imports %s", f, p)
		}
	}
}
