package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// TestTopOnce: `top --once` (output not a terminal here either) prints one
// plain-text view of an instance whose world and module segments this
// process created: the engine alive (stalled: its last publish is old) with its pid, the frame, the module's
// row; an instance without segments, or with a world segment it cannot read, is an error; a
// non-positive interval is an error.
func TestTopOnce(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	c := self(inst)
	createSegment(t, shm.SegmentName(inst, "world"), fixture.World(c))
	createSegment(t, layout.ModuleSegmentName(inst, fixture.ModuleSlot), fixture.Module(c))
	out, _, err := engineCmd(t, "top", inst, "--once", "--interval", "20ms")
	require.NoError(t, err)
	require.NotContains(t, out, "\x1b", "plain text")
	require.Contains(t, out, "FDP top  instance "+inst+"  refresh 20ms")
	// The fixture's last publish is long ago: alive, but stalled.
	require.Contains(t, out, fmt.Sprintf("engine pid %d STALLED (no publish for ", os.Getpid()))
	require.Contains(t, out, fmt.Sprintf("frame %d  fps 0.0", fixture.LatestFrame))
	var row []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 12 && f[1] == "ai" {
			row = f
		}
	}
	require.NotNil(t, row, out)
	require.Equal(t, []string{fmt.Sprint(fixture.ModuleSlot), "ai", "gone", fmt.Sprint(fixture.ReaderAIPID), "40", "0.0",
		"1", "-", "-", "3", "1", "5"}, row, "the fixture's block; its pid is not a live process\n%s", out)

	// No instance, or an unreadable world segment: an error, like stat's.
	missing := uniqueInstance()
	out, _, err = engineCmd(t, "top", missing, "--once", "--interval", "1ms")
	require.Error(t, err)
	require.Regexp(t, `^top: no engine: fdp\.`+missing+`\.world does not exist \((live: |no live instance)[^\n]*\)$`, err.Error())
	require.Empty(t, out)
	junk := uniqueInstance()
	createSegment(t, shm.SegmentName(junk, "world"), make([]byte, 4096))
	out, _, err = engineCmd(t, "top", junk, "--once")
	require.ErrorContains(t, err, "top: fdp."+junk+".world: ")
	require.Empty(t, out)
	_, _, err = engineCmd(t, "top", inst, "--interval", "0s")
	require.ErrorContains(t, err, "--interval must be positive")
}
