package tests

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/stretchr/testify/require"
)

// readmeModule returns the Go code block of the README's "Writing a module"
// section.
func readmeModule(t *testing.T) string {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "\n### Writing a module\n")
	require.GreaterOrEqual(t, i, 0, "README.md has no section \"Writing a module\"")
	s = s[i:]
	if next := strings.Index(s[1:], "\n#"); next >= 0 {
		s = s[:next+1]
	}
	open := strings.Index(s, "\n```go\n")
	require.GreaterOrEqual(t, open, 0, "the section has no Go code block")
	s = s[open+len("\n```go\n"):]
	end := strings.Index(s, "\n```\n")
	require.GreaterOrEqual(t, end, 0, "unterminated code block")
	return s[:end+1]
}

// TestReadmeModuleExample builds the README's module example as it is
// written (a package main inside this repository's module, through a build
// overlay: nothing is written into the tree) and runs it against an engine
// of the demo world: it must attach, tick, get its commands applied and
// stop cleanly on SIGTERM.
func TestReadmeModuleExample(t *testing.T) {
	src := readmeModule(t)
	require.Contains(t, src, "package main", "the README's module example must be a complete program")
	bin, err := buildDocProgram(t, "tests/readme_example", src)
	require.NoError(t, err, "the README's module example does not build")

	// A demo world small enough for a test; its simulation moves the
	// entities, with churn.
	eng, _, inst := docDemoEngine(t, "rd", 2000, 600)

	var stderr syncBuf
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "FDP_INSTANCE="+inst)
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	counter := func() (host.ModuleInfo, bool) { return moduleInfo(eng, "counter") }
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, ok := counter()
		if ok && m.Stats.Runs >= 5 && eng.Idle() {
			break
		}
		require.True(t, time.Now().Before(deadline), "the example did not tick 5 times; its stderr:\n%s", stderr.String())
		eng.Step()
		time.Sleep(time.Millisecond) // frame pacing, not a synchronisation
	}
	before, _ := counter() // every tick it was given is done, its batch committed
	eng.Step()             // plays them back (and may give it one more tick)
	m, _ := counter()
	require.Equal(t, 6, m.Every)
	require.Zero(t, m.Stats.Failures, "its stderr:\n%s", stderr.String())
	// Its destroys may find the entity gone: the demo's churn kills
	// entities, and a tick may read a snapshot taken before its previous
	// tick's destroys were played back. Nothing else may be rejected.
	for reason := range m.PlaybackRejectReasons {
		require.Equal(t, "stale_entity", reason, "%v", m.PlaybackRejectReasons)
	}
	// One create per tick (and its Set), plus the destroys of entities
	// beyond x = 990 that were still alive.
	require.GreaterOrEqual(t, m.Stats.Applied, 2*m.Stats.Runs)
	// Nothing destroys the entities it creates (x = 1): one per tick
	// played back.
	created := uint64(eng.ModuleEntities()["counter"])
	require.GreaterOrEqual(t, created, before.Stats.Runs, "entities the example created")
	require.LessOrEqual(t, created, m.Stats.Runs, "entities the example created")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "the example must exit 0 on SIGTERM; its stderr:\n%s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("the example did not stop on SIGTERM; its stderr:\n%s", stderr.String())
	}
	require.False(t, bytes.Contains([]byte(stderr.String()), []byte("level=ERROR")), "its stderr:\n%s", stderr.String())
}
