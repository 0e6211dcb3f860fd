package tests

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/layout"
)

// TestProtocolClientNotes: the numbers docs/PROTOCOL.md gives a client in
// another language are the Go SDK's and engine's: the wait after a dropped
// connection (module/attach.go abandon: two frame periods within 50..200
// ms), the event record header a reader skips past at the area's end, and
// the temporary ids' first value.
func TestProtocolClientNotes(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return strings.Join(strings.Fields(string(b)), " ")
	}
	doc, lay := read("../docs/PROTOCOL.md"), read("../docs/LAYOUT.md")
	attach, cmds := read("../module/attach.go"), read("../module/commands.go")
	require.Contains(t, attach, "min(max(2*time.Duration(wel.FramePeriod), 50*time.Millisecond), 200*time.Millisecond)")
	require.Contains(t, doc, "Wait two frame periods of the engine (the welcome's `frame_period_ns`; 50 ms at least, 200 ms at most)")
	require.Contains(t, doc, "retry after 50–200 ms")
	require.Equal(t, 24, layout.EventRecordHeader)
	require.Contains(t, lay, "fewer than 24 bytes left before the area's end: skip to the area's start")
	require.Contains(t, cmds, "c.nextTemp++ t := c.nextTemp", "temporary ids count from 1")
	require.Contains(t, doc, "a counter from 1, never reused")
	require.Contains(t, lay, "This holds only for a **pinned** reader")
}
