package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// TestFlagErrors: a negative number given to ctl, or a bad flag value, is
// one line in our words: no pflag shorthand message, no strconv leak.
func TestFlagErrors(t *testing.T) {
	cases := map[string]string{
		"ctl X step -1":           `ctl step "-1": want a number of frames`,
		"ctl X speed -1":          `ctl speed: invalid control request: speed -1: must be 0.001..64`,
		"ctl X seek -2 --no-wait": `ctl seek "-2": want a frame number`,
		"ctl X speed 0.0001":      `must be 0.001..64`,
		"replay --from -3 x":      `--from "-3": want a whole number, 0 or more`,
		"run --rate x":            `--rate "x": want a whole number`,
		"run --record x.fdpr --record-compression lz4": `--record-compression "lz4": want zstd or none`,
	}
	for in, want := range cases {
		c := Command(testWorld())
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(strings.Fields(in))
		err := c.Execute()
		require.Error(t, err, in)
		require.Contains(t, err.Error(), want, in)
		require.NotContains(t, err.Error(), "strconv", in)
		require.NotContains(t, err.Error(), "shorthand", in)
		require.NotContains(t, err.Error(), "\n", in)
	}
}

// TestFlagUsageNoBacktick: cobra takes a `quoted` word of a flag's usage
// for the value's placeholder ("--record engine dump FILE"): no usage has one.
func TestFlagUsageNoBacktick(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				n++
				require.NotContains(t, f.Usage, "`", "%s --%s", c.CommandPath(), f.Name)
			})
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(Command(testWorld()))
	require.Greater(t, n, 20)
}

// TestCheckRecordTarget: `engine run --record FILE` refuses an existing
// FILE in one line naming --record-overwrite, and a file that is not a
// recording even with it.
func TestCheckRecordTarget(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, checkRecordTarget(filepath.Join(dir, "new.fdpr"), false))
	old := filepath.Join(dir, "old.fdpr")
	require.NoError(t, os.WriteFile(old, []byte("FDPR\x01rest of a header"), 0o600))
	err := checkRecordTarget(old, false)
	require.ErrorContains(t, err, "--record-overwrite")
	require.NotContains(t, err.Error(), "\n")
	require.NoError(t, checkRecordTarget(old, true))
	txt := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(txt, []byte("notes"), 0o600))
	require.ErrorIs(t, checkRecordTarget(txt, true), record.ErrNotRecording)
}

// TestStatFollowsNewEngine: `engine stat` sees the world segment replaced
// by a new engine (a replay's seek back or --loop) and follows it, so that
// no rate is computed across two engines' counters.
func TestStatFollowsNewEngine(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	name := shm.SegmentName(inst, "world")
	createSegment(t, name, fixture.World(self(inst)))
	sg, err := openStatSegs(inst)
	require.NoError(t, err)
	defer sg.close()
	require.False(t, sg.replaced())
	require.NoError(t, os.Remove(filepath.Join(shm.Dir, name)))
	require.False(t, sg.replaced(), "none there (the gap): not replaced yet")
	createSegment(t, name, fixture.World(self(inst)))
	require.True(t, sg.replaced())
	var out bytes.Buffer
	require.NoError(t, runStat(t.Context(), &out, inst, 10*time.Millisecond, 2, true))
	require.Equal(t, 2, strings.Count(out.String(), "\n"), out.String())
}
