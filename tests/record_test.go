package tests

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	gosync "sync"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/stretchr/testify/require"
)

// contentHash is this test's own digest of a frame (FNV-1a 64), computed
// from a pinned slot of the live world segment (slotHash) and from an image
// decoded from the recording (imageHash) in the same order: the slot header
// fields a frame holds, every chunk in use (rows, alive, structural
// version, entity records, each component's version word and, for a
// version other than 0, its column: a fixed-size column whole, a
// variable-size one's handles and the value of every alive row that has
// it), every singleton's version and, when set, its value. It shares no
// code with package record.
type contentHash struct {
	h interface{ Write([]byte) (int, error) }
}

func (d contentHash) u64(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	d.h.Write(b[:])
}

func (d contentHash) bytes(b []byte) { d.u64(uint64(len(b))); d.h.Write(b) }

// varValues hashes the values of a variable-size column (handles, then
// arena) of the alive rows of recs (K records of RecordSize bytes) that
// have component k.
func (d contentHash) varValues(g *layout.WorldGeometry, recs, col []byte, k int) {
	d.bytes(col[:g.ChunkCapacity*layout.BytesHandleSize])
	arena := col[g.ChunkCapacity*layout.BytesHandleSize:]
	for row := 0; row < g.ChunkCapacity; row++ {
		r := layout.DecodeRecord(recs[row*g.RecordSize:], g.MaskWords)
		if r.Flags&layout.FlagAlive != 0 && r.Mask[k/64]&(1<<(k%64)) != 0 {
			h := layout.DecodeHandle(col[row*layout.BytesHandleSize:])
			d.bytes(arena[h.Off : h.Off+h.Len])
		}
	}
}

func slotHash(lw *layout.World, s int) uint64 {
	h := fnv.New64a()
	d := contentHash{h}
	b := lw.B
	si := lw.ReadSlotInfo(s)
	for _, v := range []uint64{si.Frame, si.Version, si.PubNanos, uint64(si.Chunks), uint64(si.Entities), uint64(si.Alive)} {
		d.u64(v)
	}
	for _, m := range si.Mask {
		d.u64(m)
	}
	for c := 0; c < int(si.Chunks); c++ {
		co := lw.ChunkOff(s, c)
		d.u64(uint64(binary.LittleEndian.Uint32(b[co+layout.ChunkRows:])))
		d.u64(uint64(binary.LittleEndian.Uint32(b[co+layout.ChunkAlive:])))
		d.u64(binary.LittleEndian.Uint64(b[co+layout.ChunkStructVersion:]))
		eo, ee := lw.EntityRange(s, c)
		recs := b[eo:ee]
		d.bytes(recs)
		for k, comp := range lw.Components {
			if si.Mask[k/64]&(1<<(k%64)) == 0 {
				continue
			}
			v := binary.LittleEndian.Uint64(b[lw.ChunkVersionOff(s, c, k):])
			d.u64(v)
			if v == 0 {
				continue
			}
			o, e := lw.ColumnRange(s, c, k)
			if comp.VarSize() {
				_, ae := lw.ArenaRange(s, c, k)
				d.varValues(lw.WorldGeometry, recs, b[o:ae], k)
			} else {
				d.bytes(b[o:e])
			}
		}
	}
	for i, sg := range lw.Singletons {
		v := binary.LittleEndian.Uint64(b[lw.SingletonVersionOff(s, i):])
		d.u64(v)
		if v != 0 {
			o := lw.SlotOff(s) + lw.SingletonOff[i]
			d.bytes(b[o : o+int(sg.Size)])
		}
	}
	return h.Sum64()
}

func imageHash(im *record.Image) uint64 {
	h := fnv.New64a()
	d := contentHash{h}
	g := im.Header().Geometry
	for _, v := range []uint64{im.Frame, im.Version, im.PubNanos, uint64(im.Chunks), uint64(im.Entities), uint64(im.Alive)} {
		d.u64(v)
	}
	for _, m := range im.Mask {
		d.u64(m)
	}
	for c := 0; c < int(im.Chunks); c++ {
		rows, alive, sv := im.ChunkInfo(c)
		d.u64(uint64(rows))
		d.u64(uint64(alive))
		d.u64(sv)
		recs := im.RecordBytes(c)
		d.bytes(recs)
		for k, comp := range g.Components {
			if im.Mask[k/64]&(1<<(k%64)) == 0 {
				continue
			}
			col, v := im.Column(c, k)
			d.u64(v)
			if v == 0 {
				continue
			}
			if comp.VarSize() {
				d.varValues(g, recs, col, k)
			} else {
				d.bytes(col[:g.ChunkCapacity*int(comp.Size)])
			}
		}
	}
	for i := range g.Singletons {
		val, v := im.Singleton(i)
		d.u64(v)
		if v != 0 {
			d.bytes(val)
		}
	}
	return h.Sum64()
}

// liveFrames pins every frame of inst it can (polling the latest) and
// hashes it (slotHash) while pinned, until stop is called.
type liveFrames struct {
	mu   gosync.Mutex
	seen map[uint64]uint64
	stop func()
}

func watchFrames(t *testing.T, inst string) *liveFrames {
	t.Helper()
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "rec-check"})
	require.NoError(t, err)
	seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	require.NoError(t, err)
	lw, err := layout.DecodeWorld(seg.Data)
	require.NoError(t, err)
	lf := &liveFrames{seen: map[uint64]uint64{}}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		last := uint64(0)
		for {
			select {
			case <-quit:
				return
			default:
			}
			f, err := r.Pin()
			if err != nil {
				time.Sleep(200 * time.Microsecond) // nothing to pin yet, or the engine is gone: poll
				continue
			}
			if n := f.Number(); n != last {
				sum := slotHash(lw, f.Slot())
				if f.Release() == nil { // a torn read (a pin reclaimed) is not kept
					lf.mu.Lock()
					lf.seen[n] = sum
					lf.mu.Unlock()
					last = n
				}
			} else {
				_ = f.Release()
			}
			time.Sleep(200 * time.Microsecond) // poll the next publish
		}
	}()
	var once gosync.Once
	lf.stop = func() { once.Do(func() { close(quit); <-done; r.Close(); seg.Close() }) }
	return lf
}

var recStatusRe = regexp.MustCompile(`rec (\d+) frames  dropped (\d+)  ([0-9.]+) MB  ([0-9.]+) MB/s`)

// TestRecordKilledEngine runs `engine run --record` with the demo world and
// an ai module (which sends commands) as processes, while a test reader
// pins and hashes the frames it sees; then SIGKILLs the engine. The
// recording reads back (its index rebuilt from the stream) with at least
// every frame the engine's recorder words said were written; every frame in
// it, decoded from its keyframe on, equals the frame the reader saw live,
// by content; the module's command batches are in it. A second engine on
// the instance (recovering the killed one) keeps the killed file as
// FILE.<frame> and records into FILE, runs 2 s and stops: its summary's
// bytes are the file's size and its MB/s the bytes over its time; every
// frame it published is in the file or counted dropped; its status lines'
// MB/s agree with the growth of the file they show.
func TestRecordKilledEngine(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "rec")
	dir := t.TempDir()
	file := filepath.Join(dir, "run.fdpr")
	eng := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "3000", "--rate", "100",
		"--status", "0", "--record", file, "--record-keyframe", "25")
	engLog := &syncBuf{}
	eng.Stdout, eng.Stderr = engLog, engLog
	require.NoError(t, eng.Start())
	t.Cleanup(func() {
		if eng.ProcessState == nil {
			_ = eng.Process.Kill()
			_ = eng.Wait()
		}
	})
	waitFor(t, "the engine's first frame", 20*time.Second, func() bool { return latestFrameOf(inst) >= 1 })
	live := watchFrames(t, inst)
	defer live.stop()
	mod := exec.Command(filepath.Join(bin, "modrunner"), "ai")
	mod.Env = append(os.Environ(), "FDP_INSTANCE="+inst, "FDP_MODULE=ai-1")
	modLog := &syncBuf{}
	mod.Stdout, mod.Stderr = modLog, modLog
	require.NoError(t, mod.Start())
	t.Cleanup(func() { _ = mod.Process.Kill(); _ = mod.Wait() })

	recWords := func() layout.RecorderStats {
		seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
		if err != nil {
			return layout.RecorderStats{}
		}
		defer seg.Close()
		return layout.ReadRecorderStats(seg.Data)
	}
	waitFor(t, "250 recorded frames", 60*time.Second, func() bool { return recWords().Written >= 250 })
	// engine stat shows the recorder.
	out, err := exec.Command(filepath.Join(bin, "engine"), "stat", "--json", "--count", "1", "--interval", "100ms", inst).Output()
	require.NoError(t, err)
	var sl inspect.StatLine
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(out), &sl), "%s", out)
	require.NotNil(t, sl.Recorder, "%s", out)
	require.Equal(t, "recording", sl.Recorder.State)
	require.GreaterOrEqual(t, sl.Recorder.Frames, uint64(250))
	require.Positive(t, sl.Recorder.FileBytes)

	require.NoError(t, eng.Process.Kill())
	_ = eng.Wait()
	live.stop()
	words := recWords() // the last figures the killed engine stored
	require.Equal(t, layout.RecorderOn, words.State)

	rd, err := record.Open(file)
	require.NoError(t, err, "engine log:\n%s", engLog.String())
	require.True(t, rd.Rebuilt(), "a killed recorder wrote no index: it is rebuilt from the stream")
	ix := rd.Index()
	require.GreaterOrEqual(t, len(ix), int(words.Written), "every frame the recorder counted written is in the file (damage: %v)", rd.Damage())
	im := record.NewImage(rd.Header())
	compared, batches := 0, 0
	live.mu.Lock()
	seen := live.seen
	live.mu.Unlock()
	for i, e := range ix {
		f, err := rd.Frame(i)
		require.NoError(t, err, "frame %d", e.Frame)
		require.NoError(t, im.Apply(f), "frame %d", e.Frame)
		if want, ok := seen[e.Frame]; ok {
			require.Equal(t, want, imageHash(im), "frame %d: recorded content differs from the published frame", e.Frame)
			compared++
		}
		for _, b := range f.Batches {
			if b.Module == "ai-1" && b.Applied+b.Rejected > 0 && len(b.Commands) > 0 {
				batches++
			}
		}
	}
	t.Logf("killed engine: %d frames in the file (%d written by its counters, %d keyframes), %d compared with live frames, %d module batches",
		len(ix), words.Written, len(rd.Keyframes()), compared, batches)
	require.GreaterOrEqual(t, compared, 50, "the live reader saw too few of the recorded frames to compare")
	require.Positive(t, batches, "the ai module's command batches are recorded; module log:\n%s", modLog.String())
	killedSize := rd.Size()
	require.NoError(t, rd.Close())

	// A second engine recovers the instance and keeps the killed recording.
	eng2 := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "3000", "--rate", "100",
		"--status", "300ms", "--duration", "2s", "--record", file)
	var out2, err2 bytes.Buffer
	eng2.Stdout, eng2.Stderr = &out2, &err2
	require.NoError(t, eng2.Run(), "stderr:\n%s", err2.String())
	kept, err := filepath.Glob(file + ".*")
	require.NoError(t, err)
	require.Len(t, kept, 1, "the killed engine's recording is kept")
	st, err := os.Stat(kept[0])
	require.NoError(t, err)
	require.Equal(t, killedSize, st.Size())

	st, err = os.Stat(file)
	require.NoError(t, err)
	m := regexp.MustCompile(`recorder: \S+: (\d+) frames \((\d+) keyframes\), (\d+) dropped .*; (\d+) bytes \(raw (\d+), compression [^)]*\), ([0-9.]+) MB/s over ([0-9.]+)(ms|s)`).FindStringSubmatch(out2.String())
	require.NotNil(t, m, "summary:\n%s", out2.String())
	atoi := func(s string) uint64 { v, err := strconv.ParseUint(s, 10, 64); require.NoError(t, err); return v }
	frames, dropped, size := atoi(m[1]), atoi(m[3]), atoi(m[4])
	require.Equal(t, uint64(st.Size()), size, "the summary's bytes are the file's size")
	rate, _ := strconv.ParseFloat(m[6], 64)
	secs, _ := strconv.ParseFloat(m[7], 64)
	if m[8] == "ms" {
		secs /= 1000
	}
	require.InDelta(t, float64(size)/1e6/secs, rate, 0.01*rate+0.006, "MB/s is the file's bytes over the run's time")
	pub := regexp.MustCompile(`engine frames \d+ in \S+, (\d+) published`).FindStringSubmatch(out2.String())
	require.NotNil(t, pub, out2.String())
	require.Equal(t, atoi(pub[1]), frames+dropped, "every published frame is recorded or counted dropped")
	rd2, err := record.Open(file)
	require.NoError(t, err)
	require.False(t, rd2.Rebuilt(), "a stopped engine closes its recording with an index")
	require.Len(t, rd2.Index(), int(frames))
	require.NoError(t, rd2.Close())

	// The status lines: MB/s is the growth of the file's MB they show over
	// their interval (300 ms asked; a line comes with the first frame
	// after it, so a little more).
	var prevMB float64
	lines, checked := 0, 0
	sc := bufio.NewScanner(&err2)
	for sc.Scan() {
		s := recStatusRe.FindStringSubmatch(sc.Text())
		if s == nil {
			continue
		}
		mb, _ := strconv.ParseFloat(s[3], 64)
		r, _ := strconv.ParseFloat(s[4], 64)
		if lines > 0 && mb-prevMB >= 0.2 {
			// The seconds the line's rate implies: at least the 300 ms
			// asked (less 10% for the rounding of MB and MB/s), and not
			// many times it (a loaded machine delays a line, never by
			// seconds at 100 frames per second).
			interval := (mb - prevMB) / r
			require.True(t, interval >= 0.27 && interval <= 1.5, "status line %q after %.2f MB: its MB/s implies an interval of %.3f s, not the ~0.3 s asked", sc.Text(), prevMB, interval)
			checked++
		}
		prevMB = mb
		lines++
	}
	require.GreaterOrEqual(t, lines, 3, "status lines:\n%s", err2.String())
	t.Logf("second engine: %d frames, %d dropped, %d bytes; %d status lines, %d rates checked", frames, dropped, size, lines, checked)

}
