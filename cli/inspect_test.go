package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// useTempShm points shm.Dir (and FDP_SHM_DIR for children) at a temp dir.
func useTempShm(t *testing.T) string {
	t.Helper()
	old := shm.Dir
	shm.Dir = t.TempDir()
	t.Setenv("FDP_SHM_DIR", shm.Dir)
	t.Cleanup(func() { shm.Dir = old })
	return shm.Dir
}

func uniqueInstance() string { return fmt.Sprintf("t%d%x", os.Getpid(), rand.Uint32()) }

// engineCmd runs the inspection commands in-process on a fresh root command.
func engineCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "engine", SilenceUsage: true}
	root.AddCommand(inspectCommands()...)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

// createSegment writes seg (a fixture) into a new segment file.
func createSegment(t *testing.T, name string, seg []byte) *shm.Segment {
	t.Helper()
	s, err := shm.Create(name, len(seg))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	copy(s.Data, seg)
	return s
}

func self(instance string) fixture.Creator {
	return fixture.Creator{Instance: instance, PID: uint32(os.Getpid()), Start: shm.SelfStartTime(), Created: 1767323045123456789}
}

// TestStaleChild is the child role of TestLsDumpGC: it creates a world
// segment owned by itself, says "ready", and blocks until it is killed.
func TestStaleChild(t *testing.T) {
	if os.Getenv("FDP_TEST_CHILD") != "creator" {
		t.Skip("child role only")
	}
	inst := os.Getenv("FDP_TEST_INSTANCE")
	seg := fixture.World(self(inst))
	s, err := shm.Create(shm.SegmentName(inst, "world"), len(seg))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	copy(s.Data, seg)
	fmt.Println("ready")
	select {} // until SIGKILL
}

// startKilledCreator re-executes the test binary as a segment creator and
// SIGKILLs it once its segment exists: the segment is then stale.
func startKilledCreator(t *testing.T, instance string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStaleChild$")
	cmd.Env = append(os.Environ(), "FDP_TEST_CHILD=creator", "FDP_TEST_INSTANCE="+instance, "FDP_SHM_DIR="+shm.Dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
	_ = cmd.Wait()
}

func TestLsDumpGC(t *testing.T) {
	dir := useTempShm(t)
	live, dead := uniqueInstance(), uniqueInstance()+"d"
	createSegment(t, shm.SegmentName(live, "world"), fixture.World(self(live)))
	createSegment(t, shm.SegmentName(live, "leases"), fixture.Leases(self(live)))
	startKilledCreator(t, dead)

	// ls --json: both instances, with their states.
	out, _, err := engineCmd(t, "ls", "--json")
	require.NoError(t, err)
	var es []lsEntry
	require.NoError(t, json.Unmarshal([]byte(out), &es))
	require.Len(t, es, 3)
	byName := map[string]lsEntry{}
	for _, e := range es {
		byName[e.Name] = e
	}
	lw := byName[shm.SegmentName(live, "world")]
	require.Equal(t, "live", lw.State)
	require.Equal(t, "world", lw.SegmentKind)
	require.Equal(t, uint32(os.Getpid()), lw.PID)
	require.Equal(t, live, lw.Instance)
	require.Equal(t, "leases", byName[shm.SegmentName(live, "leases")].SegmentKind)
	dw := byName[shm.SegmentName(dead, "world")]
	require.Equal(t, "stale", dw.State)
	require.NotEqual(t, uint32(os.Getpid()), dw.PID)
	require.NotZero(t, dw.PID)

	// ls text.
	out, _, err = engineCmd(t, "ls")
	require.NoError(t, err)
	require.Contains(t, out, shm.SegmentName(dead, "world"))
	require.Regexp(t, `(?m)^`+shm.SegmentName(live, "world")+`\s+`+live+`\s+world\s+\d+\s+\d+\s+\d+\s+live\s`, out)

	// dump: by name, by short name, by instance + kind, by path; text and JSON.
	for _, args := range [][]string{
		{"dump", shm.SegmentName(live, "world")},
		{"dump", live + ".world"},
		{"dump", live, "world"},
		{"dump", filepath.Join(dir, shm.SegmentName(live, "world"))},
	} {
		out, _, err = engineCmd(t, args...)
		require.NoError(t, err, args)
		require.Contains(t, out, "kind       world (1)")
		require.Contains(t, out, "latest     frame 10 in slot 0")
		require.Contains(t, out, "snapshots refused 3", "the engine's refused snapshots word")
		require.NotContains(t, out, "slot 0 chunks")
	}
	out, _, err = engineCmd(t, "dump", "--json", "--chunks", shm.SegmentName(live, "world"))
	require.NoError(t, err)
	var r inspect.Report
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.Equal(t, live, r.Header.Instance)
	require.True(t, r.Header.CreatorAlive)
	require.Equal(t, filepath.Join(dir, shm.SegmentName(live, "world")), r.Source)
	require.Len(t, r.World.Slots[0].ChunkDetail, 2)
	require.Equal(t, uint64(3), r.World.Stats.SnapshotsRefused)
	out, _, err = engineCmd(t, "dump", "--json", live, "leases")
	require.NoError(t, err)
	r = inspect.Report{}
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.Len(t, r.Leases.Readers, 2)
	// A stale segment can still be dumped (post-mortem), its creator dead.
	out, _, err = engineCmd(t, "dump", "--json", dead+".world")
	require.NoError(t, err)
	r = inspect.Report{}
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.False(t, r.Header.CreatorAlive)

	// gc --dry-run lists the stale segment and removes nothing.
	out, _, err = engineCmd(t, "gc", "--dry-run", "--json")
	require.NoError(t, err)
	var g gcResult
	require.NoError(t, json.Unmarshal([]byte(out), &g))
	require.Equal(t, gcResult{DryRun: true, Removed: []string{shm.SegmentName(dead, "world")}}, g)
	require.FileExists(t, filepath.Join(dir, shm.SegmentName(dead, "world")))
	out, _, err = engineCmd(t, "gc", "--dry-run")
	require.NoError(t, err)
	require.Equal(t, "would remove "+shm.SegmentName(dead, "world")+"\n", out)
	// --instance filters: nothing of the live instance is stale.
	out, _, err = engineCmd(t, "gc", "--instance", live)
	require.NoError(t, err)
	require.Equal(t, "nothing to remove\n", out)
	require.FileExists(t, filepath.Join(dir, shm.SegmentName(dead, "world")))

	// gc removes the stale segment; the live ones stay.
	out, _, err = engineCmd(t, "gc")
	require.NoError(t, err)
	require.Equal(t, "removed "+shm.SegmentName(dead, "world")+"\n", out)
	require.NoFileExists(t, filepath.Join(dir, shm.SegmentName(dead, "world")))
	require.FileExists(t, filepath.Join(dir, shm.SegmentName(live, "world")))
	require.FileExists(t, filepath.Join(dir, shm.SegmentName(live, "leases")))
	out, _, err = engineCmd(t, "gc", "--json")
	require.NoError(t, err)
	require.JSONEq(t, `{"dry_run":false,"removed":[]}`, out)
}

func TestDumpCorruptInputs(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	good := fixture.World(self(inst))
	files := map[string][]byte{
		"truncated": good[:len(good)-4096],
		"random":    func() []byte { b := make([]byte, 8192); rand.New(rand.NewSource(2)).Read(b); return b }(),
		"magic":     func() []byte { b := append([]byte(nil), good...); b[1] = 'x'; return b }(),
		"checksum":  func() []byte { b := append([]byte(nil), good...); b[layout.OffCreatedNano] ^= 1; return b }(),
	}
	want := map[string]string{
		"truncated": "corrupt segment",
		"random":    "bad magic",
		"magic":     "bad magic",
		"checksum":  "checksum mismatch",
	}
	tmp := t.TempDir()
	for name, b := range files {
		p := filepath.Join(tmp, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		_, _, err := engineCmd(t, "dump", p)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), want[name], name)
		require.Contains(t, err.Error(), "fdp/inspect: ")
		require.NotContains(t, err.Error(), "\n")
	}
	// A file below the header size is refused when mapping.
	p := filepath.Join(tmp, "tiny")
	require.NoError(t, os.WriteFile(p, []byte("FDPSEGMT"), 0o600))
	_, _, err := engineCmd(t, "dump", p)
	require.Error(t, err)
	// Missing segment.
	_, _, err = engineCmd(t, "dump", inst+".world")
	require.Error(t, err)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestStat(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	ws := createSegment(t, shm.SegmentName(inst, "world"), fixture.World(self(inst)))
	createSegment(t, shm.SegmentName(inst, "leases"), fixture.Leases(self(inst)))

	// A writer publishes while stat samples.
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for f := uint64(11); ; f++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			layout.Add64(ws.Data, layout.OffWStatPublishes, 1)
			layout.Add64(ws.Data, layout.OffWStatBytes, 1000)
			layout.Store64(ws.Data, layout.OffWStatHeartbeat, uint64(time.Now().UnixNano()))
			layout.Store64(ws.Data, layout.OffWLatest, layout.PackLatest(f, 0))
		}
	}()
	out, _, err := engineCmd(t, "stat", inst, "--interval", "30ms", "--count", "3", "--json")
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	var prev *inspect.StatLine
	for _, l := range lines {
		var s inspect.StatLine
		require.NoError(t, json.Unmarshal([]byte(l), &s))
		require.Equal(t, inst, s.Instance)
		require.Positive(t, s.IntervalNano)
		if prev != nil {
			// The rate is the publish delta over the measured interval.
			dp := float64(s.Publishes - prev.Publishes)
			require.InDelta(t, dp/(float64(s.IntervalNano)/1e9), s.FrameRate, 1e-6)
			require.InDelta(t, 1000*s.FrameRate, s.BytesPerSec, 1e-3)
			require.GreaterOrEqual(t, s.Frame, prev.Frame)
		}
		require.Equal(t, uint64(3), s.SnapshotsRefused, "the engine's refused snapshots word")
		require.Len(t, s.Readers, 2)
		require.Equal(t, "ai", s.Readers[0].Name)
		require.Equal(t, "pin", s.Readers[0].Via)
		require.Equal(t, int64(s.Frame-fixture.LatestFrame), *s.Readers[0].Lag)
		prev = &s
	}
	require.Greater(t, prev.Publishes, uint64(10), "the writer published during stat")

	out, _, err = engineCmd(t, "stat", inst, "--interval", "5ms", "--count", "1")
	require.NoError(t, err)
	require.Contains(t, out, inst+"  frame ")
	require.Contains(t, out, "snapshots refused 3 (+0)")
	require.Contains(t, out, "reader 0 ai pid 4243")

	_, _, err = engineCmd(t, "stat", uniqueInstance(), "--count", "1")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestLsAllocated: engine ls shows each segment's allocated bytes (the
// file's st_blocks × 512, as fstat gives them) beside its size: a sparse
// world segment's grow when a range of a slot is backed, a dense segment's
// are at least its size.
func TestLsAllocated(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	full := fixture.World(self(inst))
	g := fixture.WorldGeometry(inst)
	ws, err := shm.CreateSparse(shm.SegmentName(inst, "world"), len(full), g.FixedBytes())
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	if !ws.Sparse() {
		t.Skipf("%s has no fallocate: segments are not sparse", shm.Dir)
	}
	copy(ws.Data[:g.SlotsOff], full) // the header pages only: the slots stay holes
	createSegment(t, shm.SegmentName(inst, "leases"), fixture.Leases(self(inst)))

	ls := func() map[string]lsEntry {
		out, _, err := engineCmd(t, "ls", "--json")
		require.NoError(t, err)
		var es []lsEntry
		require.NoError(t, json.Unmarshal([]byte(out), &es))
		m := map[string]lsEntry{}
		for _, e := range es {
			m[e.Name] = e
		}
		return m
	}
	fstat := func(name string) int64 {
		s, err := shm.Open(name, false)
		require.NoError(t, err)
		defer s.Close()
		n, err := s.Allocated()
		require.NoError(t, err)
		return n
	}
	wn, ln := shm.SegmentName(inst, "world"), shm.SegmentName(inst, "leases")
	es := ls()
	before := es[wn].Allocated
	require.Equal(t, fstat(wn), before)
	require.Less(t, before, es[wn].Size, "a sparse world segment holds less than its size")
	require.Equal(t, fstat(ln), es[ln].Allocated)
	require.GreaterOrEqual(t, es[ln].Allocated, es[ln].Size, "a dense segment holds all of it")

	// Back three pages of slot 1: the allocated bytes grow by them.
	require.NoError(t, ws.Back(g.SlotOff(1)+layout.PageSize, 3*layout.PageSize))
	es = ls()
	require.Equal(t, fstat(wn), es[wn].Allocated)
	require.Equal(t, before+3*layout.PageSize, es[wn].Allocated)

	out, _, err := engineCmd(t, "ls")
	require.NoError(t, err)
	require.Contains(t, out, "ALLOCATED")
	require.Regexp(t, fmt.Sprintf(`(?m)^%s\s+%s\s+world\s+%d\s+%d\s`, wn, inst, es[wn].Size, es[wn].Allocated), out)
}
