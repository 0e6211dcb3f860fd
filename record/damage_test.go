package record_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/record"
	"github.com/stretchr/testify/require"
)

// recording is a small file recorded from a live world, with the digest
// of the image of every frame it holds (checked against the slot when it
// was captured).
type recording struct {
	data    []byte
	digests map[uint64]uint64
	index   []record.IndexEntry
}

func makeRecording(t testing.TB, frames, keyEvery int, opt record.WriterOptions) *recording {
	l := newLive(t, 32, 16, 120, 3)
	hdr, err := record.NewHeader(l.lw, 1, 16666666, uint32(keyEvery))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "rec.fdpr")
	wr, err := record.Create(path, hdr, opt)
	require.NoError(t, err)
	cp := record.NewCapturer(l.lw, keyEvery)
	im := record.NewImage(hdr)
	rc := &recording{digests: map[uint64]uint64{}}
	for i := 0; i < frames; i++ {
		l.step(0.1)
		s := l.publish()
		raw, info, err := cp.Capture(nil, s, []record.Event{{Type: 1, Frame: l.frame, Payload: []byte("ev")}}, nil)
		require.NoError(t, err)
		f, err := record.DecodeFrame(info.Kind, raw, hdr)
		require.NoError(t, err)
		require.NoError(t, im.Apply(f))
		require.NoError(t, im.CompareSlot(l.lw, s))
		rc.digests[l.frame] = digest(im)
		for !wr.TryEnqueue(info.Kind, info.Frame, raw) {
		}
	}
	require.NoError(t, wr.Close())
	rc.data, err = os.ReadFile(path)
	require.NoError(t, err)
	rd, err := record.Open(path)
	require.NoError(t, err)
	rc.index = rd.Index()
	require.NoError(t, rd.Close())
	return rc
}

// replayAll reads every frame of data's index, applies it, and checks the
// digests; it returns the frames read and the first error (decode or
// apply), which must be a recording error.
func (rc *recording) replayAll(t *testing.T, data []byte, what string) (int, error) {
	rd, err := record.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return 0, err
	}
	im := record.NewImage(rd.Header())
	for i, e := range rd.Index() {
		f, err := rd.Frame(i)
		if err == nil {
			err = im.Apply(f)
		}
		if err != nil {
			require.True(t, errors.Is(err, record.ErrCorrupt) || errors.Is(err, record.ErrTruncated) || errors.Is(err, record.ErrBase), "%s: %v", what, err)
			return i, err
		}
		require.Equal(t, rc.digests[e.Frame], digest(im), "%s: frame %d", what, e.Frame)
	}
	return len(rd.Index()), nil
}

// TestTruncatedEveryByte: the file cut at every byte of its last three
// frame records, its index and trailer reads back every frame whose record
// is complete (index rebuilt by the scan), each equal to the live frame,
// and names the cut (ErrTruncated) when it falls inside a record.
func TestTruncatedEveryByte(t *testing.T) {
	rc := makeRecording(t, 40, 10, record.WriterOptions{})
	n := len(rc.index)
	from := rc.index[n-3].Offset
	for cut := from; cut < int64(len(rc.data)); cut++ {
		data := rc.data[:cut]
		rd, err := record.NewReader(bytes.NewReader(data), cut)
		require.NoError(t, err, "cut %d", cut)
		complete := 0
		for _, e := range rc.index {
			if e.Offset+e.Size() <= cut {
				complete++
			}
		}
		require.True(t, rd.Rebuilt(), "cut %d", cut)
		require.Len(t, rd.Index(), complete, "cut %d", cut)
		indexEnd := int64(len(rc.data) - record.TrailerSize) // end of the index record
		atBoundary := complete < n && cut == rc.index[complete].Offset || complete == n && cut == rc.index[n-1].Offset+rc.index[n-1].Size()
		if atBoundary || cut >= indexEnd {
			require.NoError(t, rd.Damage(), "cut %d", cut)
		} else {
			require.ErrorIs(t, rd.Damage(), record.ErrTruncated, "cut %d", cut)
		}
		if atBoundary || cut%61 == 0 { // the frames decode (their checksums were checked by the scan at every cut)
			got, err := rc.replayAll(t, data, fmt.Sprintf("cut %d", cut))
			require.NoError(t, err, "cut %d", cut)
			require.Equal(t, complete, got)
		}
	}
	// A cut inside the header record: an error, never a reader.
	for cut := 0; cut < int(rc.index[0].Offset); cut += 7 {
		_, err := record.NewReader(bytes.NewReader(rc.data[:cut]), int64(cut))
		require.ErrorIs(t, err, record.ErrTruncated, "cut %d", cut)
	}
}

// TestBitFlips: one bit flipped anywhere gives a clear error where the
// damage is (a header flip: no reader; a frame flip: that frame's read),
// and every frame record before the damaged byte reads back equal to the
// live frame.
func TestBitFlips(t *testing.T) {
	rc := makeRecording(t, 40, 10, record.WriterOptions{})
	rng := newLive(t, 16, 1, 0, 9).rng
	for trial := 0; trial < 400; trial++ {
		data := bytes.Clone(rc.data)
		pos := rng.Intn(len(data))
		data[pos] ^= 1 << rng.Intn(8)
		what := fmt.Sprintf("flip at %d", pos)
		if int64(pos) < rc.index[0].Offset {
			_, err := record.NewReader(bytes.NewReader(data), int64(len(data)))
			require.ErrorIs(t, err, record.ErrCorrupt, what)
			continue
		}
		before := 0
		for _, e := range rc.index {
			if e.Offset+e.Size() <= int64(pos) {
				before++
			}
		}
		got, err := rc.replayAll(t, data, what)
		if before < len(rc.index) { // in frame record before: read up to it, then a checksum error
			require.ErrorIs(t, err, record.ErrCorrupt, what)
			require.Equal(t, before, got, what)
		} else { // in the index or the trailer: the scan finds every frame
			require.NoError(t, err, what)
			require.Equal(t, len(rc.index), got, what)
		}
	}
}

// TestKilledRecorder: a recorder process killed with SIGKILL while it
// writes leaves a file that reads back (index rebuilt) up to its last
// complete frame, each frame equal to the one the recorder captured (the
// digests it printed before queueing each frame).
func TestKilledRecorder(t *testing.T) {
	testutil.RunChild("FDP_RECORD_CHILD", runRecorderChild)
	path := filepath.Join(t.TempDir(), "killed.fdpr")
	digests := map[uint64]uint64{}
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestKilledRecorder", Env: []string{"FDP_RECORD_CHILD=" + path}, Drop: true,
		OnLine: func(line string) {
			var f, d uint64
			if _, err := fmt.Sscanf(line, "frame %d %d", &f, &d); err == nil {
				<-mu
				digests[f] = d
				mu <- struct{}{}
			}
		}})
	// Kill it once the file holds some frames (a condition, polled).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, err := os.Stat(path); err == nil && st.Size() > 1<<20 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the recorder wrote nothing")
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, c.Cmd.Process.Signal(syscall.SIGKILL))
	c.Wait(30 * time.Second)
	rd, err := record.Open(path)
	require.NoError(t, err)
	defer rd.Close()
	require.True(t, rd.Rebuilt())
	require.Greater(t, len(rd.Index()), 10)
	im := record.NewImage(rd.Header())
	<-mu
	defer func() { mu <- struct{}{} }()
	for i, e := range rd.Index() {
		f, err := rd.Frame(i)
		require.NoError(t, err)
		require.NoError(t, im.Apply(f))
		want, ok := digests[e.Frame]
		require.True(t, ok, "frame %d in the file but not announced", e.Frame)
		require.Equal(t, want, digest(im), "frame %d", e.Frame)
	}
	t.Logf("killed after %d frames; damage: %v", len(rd.Index()), rd.Damage())
}

// runRecorderChild records a live world into the file named by role until
// it is killed, printing "frame F DIGEST" before it queues each frame.
func runRecorderChild(path string) int {
	t := &testing.T{}
	l := newLive(t, 64, 64, 2000, 5)
	hdr, err := record.NewHeader(l.lw, 1, 16666666, 30)
	if err != nil {
		return 2
	}
	wr, err := record.Create(path, hdr, record.WriterOptions{})
	if err != nil {
		return 2
	}
	cp := record.NewCapturer(l.lw, 30)
	im := record.NewImage(hdr)
	out := bufio.NewWriter(os.Stdout)
	for {
		l.step(0.2)
		s := l.publish()
		raw, info, err := cp.Capture(nil, s, nil, nil)
		if err != nil {
			return 3
		}
		f, err := record.DecodeFrame(info.Kind, raw, hdr)
		if err != nil || im.Apply(f) != nil || im.CompareSlot(l.lw, s) != nil {
			return 4
		}
		fmt.Fprintf(out, "frame %d %d\n", l.frame, digest(im))
		out.Flush()
		for !wr.TryEnqueue(info.Kind, info.Frame, raw) {
			time.Sleep(time.Millisecond)
		}
	}
}
