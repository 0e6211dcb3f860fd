package shm

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// deadListener binds a unix socket at path and closes it without removing
// the file: connecting to it is refused, as to a dead engine's socket.
func deadListener(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
}

// TestGCRemovesDeadEngineSocket: `engine gc` (GC) removes the control socket
// fdp.<i>.sock of an engine that died (a real process, SIGKILLed) together
// with its stale world segment, and keeps every socket that may still be
// used: one a live engine listens on, one on which someone listens although
// the world is gone, one of an instance whose world segment is live (an
// engine starting), and a file that is not a socket. DeadSockets (the dry
// run) names exactly what GC removes.
func TestGCRemovesDeadEngineSocket(t *testing.T) {
	dir := useTempDir(t)
	sock := func(inst string) string { return filepath.Join(dir, Prefix+inst+SocketSuffix) }

	dead, live, listening, starting, plain := uniqueInstance(), uniqueInstance(), uniqueInstance(), uniqueInstance(), uniqueInstance()
	// A dead engine: world segment and socket of a killed process.
	d := startChild(t, "engine", "FDP_CHILD_SEG="+SegmentName(dead, WorldKind), "FDP_CHILD_MODE=ready", "FDP_CHILD_SOCK="+sock(dead))
	require.Equal(t, "ok", d.line(t), d.stderr.String())
	d.kill(t)
	// A live engine.
	l := startChild(t, "engine", "FDP_CHILD_SEG="+SegmentName(live, WorldKind), "FDP_CHILD_MODE=ready", "FDP_CHILD_SOCK="+sock(live))
	require.Equal(t, "ok", l.line(t), l.stderr.String())
	// No world, but someone listens.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock(listening), Net: "unix"})
	require.NoError(t, err)
	defer ln.Close()
	// A live (starting) world, nobody listening yet.
	seg, err := Create(SegmentName(starting, WorldKind), 2*4096)
	require.NoError(t, err)
	defer seg.Close()
	deadListener(t, sock(starting))
	// Not a socket.
	require.NoError(t, os.WriteFile(sock(plain), nil, 0o600))

	want := Prefix + dead + SocketSuffix
	require.Equal(t, []string{want}, DeadSockets(""))
	require.Equal(t, []string{want}, DeadSockets(dead))
	require.Empty(t, DeadSockets(live))

	removed, err := GC(live) // another instance: nothing of dead's
	require.NoError(t, err)
	require.Empty(t, removed)
	require.FileExists(t, sock(dead))

	removed, err = GC("")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{SegmentName(dead, WorldKind), want}, removed)
	require.NoFileExists(t, sock(dead))
	for _, inst := range []string{live, listening, starting, plain} {
		require.FileExists(t, sock(inst), inst)
	}

	// Once the live engine dies too, its socket goes with its world.
	l.kill(t)
	removed, err = GC(live)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{SegmentName(live, WorldKind), Prefix + live + SocketSuffix}, removed)
}
