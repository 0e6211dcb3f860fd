package cli

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

type vPos struct{ X, Y float64 }
type vHP struct{ V uint16 }
type vTag struct{ A [3]uint32 }

// TestVerifyPublisherChild is the child role of TestVerify: it publishes a
// changing world (writes, creates, destroys) into fresh segments of
// FDP_TEST_INSTANCE as fast as it can, says "ready" after the first frame,
// and runs until it is killed.
func TestVerifyPublisherChild(t *testing.T) {
	if os.Getenv("FDP_TEST_CHILD") != "verify-publisher" {
		t.Skip("child role only")
	}
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	reg := world.NewRegistry()
	pos, _ := world.Register[vPos](reg, "Pos")
	hp, _ := world.Register[vHP](reg, "HP")
	tag, _ := world.Register[vTag](reg, "Tag")
	w, err := world.New(reg, world.Config{ChunkCapacity: 16, MaxChunks: 32})
	if err != nil {
		fail(err)
	}
	var live []world.Entity
	rng := rand.New(rand.NewSource(1))
	spawn := func() {
		e, err := w.Create()
		if err != nil {
			fail(err)
		}
		_ = world.Set(w, e, pos, vPos{X: float64(e.Index())})
		if e.Index()%3 == 0 {
			_ = world.Set(w, e, hp, vHP{V: uint16(e.Index())})
		}
		live = append(live, e)
	}
	for i := 0; i < 300; i++ {
		spawn()
	}
	segs, err := fsync.CreateWorldSegments(os.Getenv("FDP_TEST_INSTANCE"), w, 4, 0)
	if err != nil {
		fail(err)
	}
	pub, err := fsync.NewPublisher(w, segs)
	if err != nil {
		fail(err)
	}
	for frame := uint64(1); ; frame++ {
		w.Advance()
		for k := 0; k < 20; k++ {
			if p := world.Ptr[vPos](w, live[rng.Intn(len(live))], pos); p != nil {
				p.Y = float64(frame)
			}
		}
		j := rng.Intn(len(live))
		_ = w.Destroy(live[j])
		live[j] = live[len(live)-1]
		live = live[:len(live)-1]
		spawn()
		_ = world.Set(w, live[rng.Intn(len(live))], tag, vTag{A: [3]uint32{uint32(frame)}})
		if _, err := pub.Publish(frame, reg.Mask()); err != nil {
			fail(err)
		}
		if frame == 1 {
			fmt.Println("ready")
		}
	}
}

// startPublisher runs TestVerifyPublisherChild for instance and returns it
// once it published its first frame.
func startPublisher(t *testing.T, instance string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyPublisherChild$")
	cmd.Env = append(os.Environ(), "FDP_TEST_CHILD=verify-publisher", "FDP_TEST_INSTANCE="+instance, "FDP_SHM_DIR="+shm.Dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
	return cmd
}

func TestVerify(t *testing.T) {
	dir := useTempShm(t)
	inst := uniqueInstance()
	pub := startPublisher(t, inst)

	// A live engine publishing frames: 20 distinct frames, all exact.
	out, _, err := engineCmd(t, "verify", inst, "--frames", "20", "--json")
	require.NoError(t, err, out)
	var res verifyResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, 20, res.Frames)
	require.Greater(t, res.LastFrame, res.FirstFrame)
	require.Zero(t, res.Inconsistent)
	require.Empty(t, res.First)
	require.Positive(t, res.Slots+res.SlotsBusy)

	// The engine dies: its segment is audited once (no waiting for frames).
	require.NoError(t, syscall.Kill(pub.Process.Pid, syscall.SIGKILL))
	_ = pub.Wait()
	path := filepath.Join(dir, shm.SegmentName(inst, "world"))
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	out, _, err = engineCmd(t, "verify", inst)
	require.NoError(t, err, out)
	require.Contains(t, out, "1 frame(s) audited")
	require.Contains(t, out, "OK: every audited frame satisfies every invariant")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "verify must not write to the segment")

	// A corrupted copy: the latest frame's first chunk counts one alive
	// entity too many.
	bad := append([]byte(nil), before...)
	lw, err := layout.DecodeWorld(bad)
	require.NoError(t, err)
	_, s, ok := layout.UnpackLatest(binary.LittleEndian.Uint64(bad[layout.OffWLatest:]))
	require.True(t, ok)
	o := lw.ChunkOff(s, 0) + layout.ChunkAlive
	binary.LittleEndian.PutUint32(bad[o:], binary.LittleEndian.Uint32(bad[o:])+1)
	badInst := inst + "x"
	createSegment(t, shm.SegmentName(badInst, "world"), bad)
	out, _, err = engineCmd(t, "verify", badInst)
	require.Error(t, err)
	require.Contains(t, err.Error(), "chunk_alive")
	require.NotContains(t, err.Error(), "\n")
	require.Contains(t, out, "INCONSISTENT")
	require.Contains(t, out, "alive_sum")
	out, _, err = engineCmd(t, "verify", "--json", badInst)
	require.Error(t, err)
	res = verifyResult{}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, 1, res.ByKind["chunk_alive"])
	require.NotEmpty(t, res.First)
	require.Equal(t, audit.KindChunkAlive, res.First[0].Kind)
	require.Equal(t, s, res.First[0].Slot)

	// The real binary: exit status 1 and one line on stderr.
	_, stderr, code := runMain(t, "verify", badInst)
	require.Equal(t, 1, code)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	require.Contains(t, stderr, "chunk_alive")
	_, stderr, code = runMain(t, "verify", inst)
	require.Equal(t, 0, code, stderr)

	// A file path (a copy of a crashed engine's segment) and an aside
	// segment name are verified as well.
	copyPath := filepath.Join(t.TempDir(), "copy.world")
	require.NoError(t, os.WriteFile(copyPath, bad, 0o600))
	_, _, err = engineCmd(t, "verify", copyPath)
	require.ErrorContains(t, err, "chunk_alive")
	createSegment(t, shm.SegmentName(inst, "world.prev"), before)
	out, _, err = engineCmd(t, "verify", shm.SegmentName(inst, "world.prev"))
	require.NoError(t, err, out)
	require.Contains(t, out, "1 frame(s) audited")

	// A world that never published: nothing to verify is an error.
	empty := append([]byte(nil), before...)
	binary.LittleEndian.PutUint64(empty[layout.OffWLatest:], 0)
	for s := 0; s < lw.Slots; s++ {
		binary.LittleEndian.PutUint64(empty[lw.SlotOff(s)+layout.SlotSeq:], 0)
		binary.LittleEndian.PutUint64(empty[lw.SlotOff(s)+layout.SlotVersion:], 0)
	}
	createSegment(t, shm.SegmentName(inst+"none", "world"), empty)
	out, _, err = engineCmd(t, "verify", inst+"none")
	require.ErrorContains(t, err, "nothing published")
	require.NotContains(t, out, "OK")

	// Missing and corrupt segments: one-line errors.
	_, _, err = engineCmd(t, "verify", inst+"missing")
	require.ErrorIs(t, err, os.ErrNotExist)
	junk := make([]byte, 3*4096)
	rand.New(rand.NewSource(3)).Read(junk)
	createSegment(t, shm.SegmentName(inst+"junk", "world"), junk)
	_, stderr, code = runMain(t, "verify", inst+"junk")
	require.Equal(t, 1, code)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	require.Contains(t, stderr, "bad magic")
	_, _, err = engineCmd(t, "verify", inst, "--frames", "0")
	require.Error(t, err)
}

// TestVerifyArgumentFileOrInstance: verify resolves its argument as dump
// does: a bare name that names an existing file in the working directory is
// that file (it had been taken for an instance name), a name of no file is
// the instance's world segment, a directory is no file; a name with '.' is
// a segment name.
func TestVerifyArgumentFileOrInstance(t *testing.T) {
	dir := useTempShm(t)
	inst := uniqueInstance()
	createSegment(t, shm.SegmentName(inst, "world"), []byte(strings.Repeat("x", 3*4096)))
	cwd := t.TempDir()
	t.Chdir(cwd)
	segPath := filepath.Join(dir, shm.SegmentName(inst, "world"))

	// No file of that name: the instance's world segment (junk: bad magic).
	_, _, err := engineCmd(t, "verify", inst)
	require.ErrorContains(t, err, segPath)
	require.ErrorContains(t, err, "bad magic")

	// A file named like the instance, without '.' or '/': the file.
	require.NoError(t, os.WriteFile(inst, fixture.World(self(inst)), 0o600))
	out, _, err := engineCmd(t, "verify", "--json", inst)
	var res verifyResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), "verify read the file: %v %s", err, out)
	require.Equal(t, filepath.Join(cwd, inst), mustAbs(t, res.Segment), "the file shadows the instance")
	r, err := dumpJSON(t, inst)
	require.NoError(t, err)
	require.Equal(t, res.Segment, r.Source, "dump reads the same file")

	// A directory is no file: the name is the instance again.
	require.NoError(t, os.Remove(inst))
	require.NoError(t, os.Mkdir(inst, 0o700))
	_, _, err = engineCmd(t, "verify", inst)
	require.ErrorContains(t, err, segPath)

	// A name with '.' that names no file is a segment name.
	_, _, err = engineCmd(t, "verify", inst+".world")
	require.ErrorContains(t, err, segPath)
}
