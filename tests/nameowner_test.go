package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/stretchr/testify/require"
)

// TestModuleNameOwnedByUID (outside tester, finding 3): a module name
// belongs to the uid that registered it first, for the engine's lifetime.
// After the engine-uid module "victim" dies, a process of uid 65534
// (admitted by --allow-uid) cannot take its name: the hello is refused with
// a clear error and counted, the slot stays the victim's, and the real
// module rejoins under its name. The same process may join under a name of
// its own.
func TestModuleNameOwnedByUID(t *testing.T) {
	segfaultChild()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a module as uid 65534 (CI runs as root)")
	}
	r := newRunRig(t, host.Config{AllowUIDs: []uint32{65534}})
	const test = "TestModuleNameOwnedByUID"
	// A copy of this test binary that uid 65534 may execute.
	dir, err := os.MkdirTemp("", "fdp-name-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	exe := filepath.Join(dir, "tests.test")
	copyExecutable(t, os.Args[0], exe)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}

	cmd, _ := r.spawn(test, "honest", "victim", nil, "")
	waitFor(t, "the victim ticking", 5*time.Second, r.running("victim", 1))
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	waitFor(t, "the victim's death handled", 5*time.Second, func() bool {
		return r.module("victim").State == host.StateDead
	})

	squatter, out := r.spawn(test, "honest", "victim", nobody, exe)
	exited := make(chan error, 1)
	go func() { exited <- squatter.Wait() }()
	select {
	case err := <-exited:
		require.Error(t, err, "the squatter must be refused:\n%s", out.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("the squatter was not refused:\n%s\nengine:\n%s", out.String(), r.log.String())
	}
	require.Contains(t, out.String(), fmt.Sprintf(`module name "victim" belongs to uid %d, the peer`, os.Getuid()), out.String())
	require.EqualValues(t, 1, r.eng.NamesRefused())
	m := r.module("victim")
	require.Equal(t, host.StateDead, m.State, "the slot is still the dead victim's")
	require.EqualValues(t, 1, m.Stats.Joins)

	// uid 65534 may register a name of its own; the real module rejoins.
	r.spawn(test, "honest", "nobodys", nobody, exe)
	waitFor(t, "the uid-65534 module ticking under its own name", 5*time.Second, r.running("nobodys", 1))
	r.spawn(test, "honest", "victim", nil, "")
	waitFor(t, "the victim rejoined", 5*time.Second, r.running("victim", 2))
	r.requireAlive()
}
